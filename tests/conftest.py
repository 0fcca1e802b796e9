"""Shared fixtures: tiny RuDOLPH configs and checkpoints written in the published format."""
import os

import pytest
import torch

from rudolph.model import MODELS, ruDolphModel

# Tiny models are overhead-bound: one intra-op thread per test process avoids oversubscribing
# the CPU (pytest-xdist already runs one process per core).
torch.set_num_threads(1)

TINY_PARAMS = dict(
    num_layers=5, hidden_size=32, num_attention_heads=4,
    embedding_dropout_prob=0.1, attention_dropout_prob=0.1, output_dropout_prob=0.1,
    l_text_seq_length=8, image_tokens_per_dim=4, r_text_seq_length=6,
    kernel_size=3, last_kernel_size=5, vocab_size=1000 + 8,
    text_special_tokens=16, image_special_tokens=4, image_vocab_size=64,
    cogview_sandwich_layernorm=True, cogview_pb_relax=True, mlp_activation='gelu_jit',
)
TINY_REPO = 'rudolph-tests/tiny'


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Tests never touch the network."""
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')


@pytest.fixture
def tiny_params():
    return dict(TINY_PARAMS)


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return ruDolphModel(device='cpu', **TINY_PARAMS).eval()


@pytest.fixture
def tiny_registered(monkeypatch):
    """Registers the tiny config as MODELS['tiny'] with a fake hub repo."""
    monkeypatch.setitem(MODELS, 'tiny', dict(hf_version='v3', description='tiny test config', repo_id=TINY_REPO,
                                             filename='pytorch_model.bin', model_params=dict(TINY_PARAMS)))
    return 'tiny'


def fill_hub_cache(cache_dir, repo_id: str, filename: str, payload_writer, commit: str = 'a' * 40,
                   repo_type: str = 'model') -> str:
    """Lay out ``cache_dir`` as huggingface_hub's cache would after downloading ``filename``."""
    folder = os.path.join(str(cache_dir), f'{repo_type}s--' + repo_id.replace('/', '--'))
    snapshot = os.path.join(folder, 'snapshots', commit)
    os.makedirs(snapshot, exist_ok=True)
    os.makedirs(os.path.join(folder, 'refs'), exist_ok=True)
    with open(os.path.join(folder, 'refs', 'main'), 'w') as f:
        f.write(commit)
    path = os.path.join(snapshot, filename)
    payload_writer(path)
    return path
