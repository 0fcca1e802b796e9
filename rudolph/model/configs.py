"""The published RuDOLPH checkpoints: hub location and constructor arguments."""
from typing import Any, Dict

__all__ = ['MODELS']

_COMMON = dict(
    embedding_dropout_prob=0.1,
    attention_dropout_prob=0.1,
    output_dropout_prob=0.1,
    image_vocab_size=8192,
    cogview_sandwich_layernorm=True,
    cogview_pb_relax=True,
    mlp_activation='gelu_jit',
)


def _config(repo_id: str, description: str, **kwargs: Any) -> Dict[str, Any]:
    return dict(
        hf_version='v3',
        description=description,
        model_params={**_COMMON, **kwargs},
        repo_id=repo_id,
        filename='pytorch_model.bin',
    )


_2_7B = dict(num_layers=32, hidden_size=2560, num_attention_heads=32,
             l_text_seq_length=384, image_tokens_per_dim=24, r_text_seq_length=128,
             kernel_size=7, last_kernel_size=9, vocab_size=16384 + 384,
             text_special_tokens=1024, image_special_tokens=1024)

MODELS: Dict[str, Dict[str, Any]] = {
    '350M': _config(
        'shonenkov-AI/RuDOLPH-350M-v2', 'RuDOLPH 350M v2 with task tokens, 128 px images',
        num_layers=24, hidden_size=1024, num_attention_heads=16,
        l_text_seq_length=64, image_tokens_per_dim=16, r_text_seq_length=64,
        kernel_size=7, last_kernel_size=9, vocab_size=16384 + 64,
        text_special_tokens=384, image_special_tokens=384),
    '1.3B': _config(
        'sberbank-ai/RUDOLPH-1.3B', 'RuDOLPH 1.3B, 256 px images',
        num_layers=24, hidden_size=2048, num_attention_heads=16,
        l_text_seq_length=128, image_tokens_per_dim=32, r_text_seq_length=128,
        kernel_size=9, last_kernel_size=11, vocab_size=16384 + 128,
        text_special_tokens=2048, image_special_tokens=64),
    '2.7B': _config('sberbank-ai/RUDOLPH-2.7B', 'RuDOLPH 2.7B, 192 px images', **_2_7B),
    '2.7B_fbc2': _config('sberbank-ai/RUDOLPH-2.7B-FBC2', 'RuDOLPH 2.7B fine-tuned on FBC2 tasks', **_2_7B),
    '350M_v1': _config(
        'sberbank-ai/RuDOLPH-350M', 'RuDOLPH 350M, first release without task tokens',
        num_layers=24, hidden_size=1024, num_attention_heads=16,
        l_text_seq_length=64, image_tokens_per_dim=16, r_text_seq_length=64,
        kernel_size=7, last_kernel_size=9, vocab_size=16384 + 64,
        text_special_tokens=0, image_special_tokens=0),
}
