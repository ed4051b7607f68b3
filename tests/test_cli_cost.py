import json

from scaling_search.cli import main

EXPECTED_PARAMS = [5_288_548, 7_794_184, 9_109_994, 12_233_232, 19_341_616, 30_389_784, 43_040_704, 66_347_960]


def test_cost_json_for_the_family(capsys):
    assert main(["cost", "b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["params"] for r in rows] == EXPECTED_PARAMS
    assert rows[0]["macs"] == 385_814_752
    assert {"name", "resolution", "width", "depth", "params", "macs", "activations"} <= set(rows[0])


def test_cost_multipliers_and_resolution(capsys):
    assert main(["cost", "b0", "--width", "2", "--depth", "2", "--resolution", "64", "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert (row["width"], row["depth"], row["resolution"]) == (2.0, 2.0, 64)


def test_cost_csv_and_arch(capsys):
    arch = "ds_r1_k3_s1_e1_c16_se0.25 ir_r2_k3_s2_e6_c24_se0.25 ir_r2_k5_s2_e6_c40_se0.25 ir_r3_k3_s2_e6_c80_se0.25 " \
           "ir_r3_k5_s1_e6_c112_se0.25 ir_r4_k5_s2_e6_c192_se0.25 ir_r1_k3_s1_e6_c320_se0.25"
    assert main(["cost", "--arch", arch, "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("name,resolution,width,depth,params,macs,activations")
    assert ",5288548,385814752," in lines[1]


def test_cost_config_file(tmp_path, capsys):
    from scaling_search.network.family import efficientnet

    path = tmp_path / "b1.json"
    path.write_text(json.dumps(efficientnet("b1").to_dict()))
    assert main(["cost", "--config", str(path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["params"] == EXPECTED_PARAMS[1]


def test_cost_counters_agree_on_params(capsys):
    for counter in ("torch", "ptflops"):
        assert main(["cost", "b0", "--resolution", "64", "--counter", counter, "--format", "json"]) == 0
        assert json.loads(capsys.readouterr().out)[0]["params"] == EXPECTED_PARAMS[0]
