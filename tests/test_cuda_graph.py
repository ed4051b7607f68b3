"""The captured training step: refused where it cannot run, and on CUDA the same training as the eager step.

The CUDA tests are skipped without a GPU (CI has none); ``benchmarks/gpu_check.sh`` runs them on one.
"""

from dataclasses import replace

import pytest
import torch

from scaling_search.data.synthetic import synthetic_dataset
from scaling_search.errors import UserError
from scaling_search.network.family import EFFICIENTNET_B0
from scaling_search.network.model import build_model
from scaling_search.network.scaling import scale
from scaling_search.training import TrainSettings, train_proxy
from scaling_search.training.cuda_graph import GraphedStep, use_cuda_graph

TINY = replace(scale(EFFICIENTNET_B0, width=0.25, depth=0.34), resolution=32, num_classes=10)
FAST = TrainSettings(epochs=2, batch_size=32, threads=1, eval_batch_size=100)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_auto_captures_on_cuda_in_one_process_only():
    assert use_cuda_graph("auto", torch.device("cuda"), 1)
    assert not use_cuda_graph("auto", torch.device("cuda"), 2)
    assert not use_cuda_graph("auto", torch.device("cpu"), 1)
    assert not use_cuda_graph("off", torch.device("cuda"), 1)


def test_on_without_cuda_is_a_clear_user_error():
    data = synthetic_dataset(4, 2, seed=0)
    with pytest.raises(UserError, match="cuda_graph = on needs CUDA"):
        train_proxy(TINY, data, replace(FAST, device="cpu", cuda_graph="on"))
    with pytest.raises(UserError, match="cuda_graph must be auto, on or off"):
        TrainSettings(cuda_graph="yes")


@cuda
def test_capture_changes_no_weight_or_buffer_and_replays_fresh_gradients():
    torch.manual_seed(0)
    network = replace(TINY, dropout=0.0, drop_connect=0.0)  # no random draws: eager must give the same numbers
    model = build_model(network).cuda().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randn(16, 3, 32, 32, device="cuda")
    labels = torch.randint(0, 10, (16,), device="cuda")
    step = GraphedStep(model, torch.nn.CrossEntropyLoss(), images, labels, autocast=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    logits, loss = step(images, labels)
    eager_model = build_model(network).cuda().train()
    eager_model.load_state_dict(before)
    eager_loss = torch.nn.functional.cross_entropy(eager_model(images), labels)
    eager_loss.backward()
    torch.testing.assert_close(loss, eager_loss, rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(model.named_parameters(), eager_model.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-5, msg=name)
    # a second batch gives its own loss (the graph reads the new inputs, not the captured ones)
    _, other = step(images.flip(0) * 2, labels.flip(0))
    assert not torch.equal(other, eager_loss)


@cuda
def test_captured_training_matches_eager_training():
    data = synthetic_dataset(8, 3, seed=0)
    settings = replace(FAST, device="cuda")
    graphed = train_proxy(TINY, data, replace(settings, cuda_graph="on"))
    eager = train_proxy(TINY, data, replace(settings, cuda_graph="off"))
    for g, e in zip(graphed.history, eager.history):
        assert g.train_loss == pytest.approx(e.train_loss, rel=2e-2)
        assert abs(g.val_top1 - e.val_top1) <= 0.05
