"""The proxy function (scaling_search/network/proxy.py): pinned on B0, and the property that it keeps every direction."""

from dataclasses import replace

import pytest

from scaling_search.network.family import EFFICIENTNET_B0, PAPER_COEFFICIENTS
from scaling_search.network.proxy import ProxyTransform, proxy_channel_divisor, to_proxy
from scaling_search.settings import ProxySettings
from scaling_search.search import ablations
from scaling_search.settings.study import DeploymentSettings, load_study_config
from scaling_search.search.grid import coefficient_grid
from scaling_search.network.spec import NetworkSpec

B0 = replace(EFFICIENTNET_B0, num_classes=10)


def test_b0_proxy_of_the_quick_preset_is_pinned():
    transform = ProxyTransform.for_baseline(ProxySettings(resolution=40, width=0.5), B0)
    proxy = to_proxy(B0, transform)
    assert proxy.resolution == 40
    assert proxy.stem_channels == 16 and proxy.head_channels == 640
    assert [s.out_channels for s in proxy.stages] == [8, 12, 20, 40, 56, 96, 160]
    assert [s.repeats for s in proxy.stages] == [s.repeats for s in B0.stages]
    assert [(s.kernel, s.stride, s.expand_ratio) for s in proxy.stages] == [
        (s.kernel, s.stride, s.expand_ratio) for s in B0.stages]
    assert to_proxy(B0, transform) == proxy  # pure


@pytest.mark.parametrize(("width", "divisor"), [(1.0, 8), (0.5, 4), (0.3, 2), (0.25, 2), (0.1, 1)])
def test_channel_divisor_keeps_each_8_channel_step(width, divisor):
    assert proxy_channel_divisor(width) == divisor


def test_proxy_depth_factor_and_identity():
    identity = ProxyTransform(224, 224, 1.0, 1.0)
    assert to_proxy(B0, identity) == B0
    halved = to_proxy(B0, ProxyTransform(224, 224, 1.0, 0.5))
    assert [s.repeats for s in halved.stages] == [1, 1, 1, 2, 2, 2, 1]


def _signs(spec: NetworkSpec, base: NetworkSpec) -> list[int]:
    def sign(a: float, b: float) -> int:
        return (a > b) - (a < b)

    signs = [sign(spec.resolution, base.resolution), sign(spec.stem_channels, base.stem_channels),
             sign(spec.head_channels, base.head_channels)]
    for stage, base_stage in zip(spec.stages, base.stages):
        signs += [sign(stage.out_channels, base_stage.out_channels), sign(stage.repeats, base_stage.repeats)]
    return signs


def _candidates(preset: str) -> tuple[NetworkSpec, ProxyTransform, list[NetworkSpec]]:
    config = load_study_config(preset, {}, None, None)
    base = config.deployment_network(10, 3)
    transform = config.proxy_transform(base)
    deployment = config.deployment
    grid = coefficient_grid(base, transform, config.search.grid_step, config.search.grid_tol,
                            config.search.grid_max, deployment)
    specs = [deployment.compound(base, p.alpha, p.beta, p.gamma, 1.0) for p in grid.points]
    points = (ablations.figure3_points(base, deployment, transform, ablations.PAPER_WIDTHS, ablations.PAPER_DEPTHS,
                                       ablations.PAPER_RESOLUTIONS)
              + ablations.figure4_points(base, deployment, transform, (1.0, 1.4, 1.8))
              + ablations.figure8_points(base, deployment, transform, PAPER_COEFFICIENTS, (1.0, 2.0), "paper"))
    specs += [NetworkSpec.from_dict(p["deployment"]) for p in points]
    return base, transform, specs


@pytest.mark.parametrize("preset", ["smoke", "quick", "standard"])
def test_every_candidate_proxy_moves_the_way_its_deployment_spec_does(preset):
    base, transform, specs = _candidates(preset)
    base_proxy = to_proxy(base, transform)
    assert len(specs) > 20
    for spec in specs:
        assert _signs(to_proxy(spec, transform), base_proxy) == _signs(spec, base), spec


def test_the_old_rounding_erased_beta_1_1_and_the_new_one_keeps_it():
    beta = DeploymentSettings().scale(B0, width=1.1)
    transform = ProxyTransform.for_baseline(ProxySettings(resolution=40, width=0.5), B0)
    old = [max(8, int(c * 0.5 + 4) // 8 * 8) for c in (24, 40)]  # round_filters to 8 at width 0.5: 24->16, 40->24
    assert old == [max(8, int(c * 0.5 + 4) // 8 * 8) for c in (24, 48)]  # 48 (beta 1.1) collapsed onto 40's proxy
    assert beta.stages[2].out_channels == 48 and B0.stages[2].out_channels == 40
    assert to_proxy(beta, transform).stages[2].out_channels > to_proxy(B0, transform).stages[2].out_channels
