"""Record tests/data/timm_fixture.json from a real timm: what tests/test_timm.py holds build_model against.

timm imports torchvision, whose wheels do not load beside the CPU build of torch this project installs, so the
fixture is recorded once where timm installs and checked in. Rerecord it with (a venv of its own; on x86_64 the
pair below is on this machine's disk):

    python -m venv /tmp/timm-venv && /tmp/timm-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm
    /tmp/timm-venv/bin/pip install --no-deps -e .
    /tmp/timm-venv/bin/python tests/data/record_timm_fixture.py

For B0, a compound-scaled B0 and a network of the stage-1 search space it builds timm's EfficientNet from the
config's ``timm`` block exactly as README shows, and records its module tree (path and class of every module),
its state-dict keys and shapes, its parameter count, and its eval-mode outputs on a fixed input after
:func:`scaling_search.network.model.seeded_weights` (so both sides hold the same weights).
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

import timm
import torch
from timm.models._efficientnet_builder import decode_arch_def
from timm.models.efficientnet import EfficientNet
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timm_networks import FIXTURE_INPUT, fixture_networks  # noqa: E402

from scaling_search.network.model import seeded_weights  # noqa: E402
from scaling_search.network.timm_compat import timm_config  # noqa: E402


def build_timm(config: dict) -> nn.Module:
    return EfficientNet(decode_arch_def(config["arch_def"]), act_layer=nn.SiLU,
                        norm_layer=partial(nn.BatchNorm2d, **config["norm_kwargs"]), **config["kwargs"])


def main() -> None:
    body = {"timm": timm.__version__, "torch": torch.__version__, "input": FIXTURE_INPUT, "networks": {}}
    for name, spec in fixture_networks().items():
        model = seeded_weights(build_timm(timm_config(spec)), FIXTURE_INPUT["weights_seed"]).eval()
        images = torch.randn(*FIXTURE_INPUT["shape"][:2], spec.resolution, spec.resolution,
                             generator=torch.Generator().manual_seed(FIXTURE_INPUT["seed"]))
        with torch.no_grad():
            logits = model(images)
        body["networks"][name] = {
            "spec": spec.to_dict(explicit=True),
            "modules": [[path, type(module).__name__] for path, module in model.named_modules()],
            "state": [[key, list(tensor.shape)] for key, tensor in model.state_dict().items()],
            "params": sum(p.numel() for p in model.parameters()),
            "logits": [[round(v, 6) for v in row] for row in logits.tolist()],
        }
        print(f"{name}: {body['networks'][name]['params']:,} params, {len(body['networks'][name]['state'])} keys")
    path = Path(__file__).resolve().parent / "timm_fixture.json"
    path.write_text(json.dumps(body, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
