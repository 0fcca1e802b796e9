"""Freezing parameter groups of ruDolphModel for cheaper fine-tuning."""
import logging
import re
from typing import Dict, List

from torch import nn

__all__ = ['freeze', 'parameter_group']

logger = logging.getLogger(__name__)

_LAYERNORM = re.compile(r'(^|\.)(input_layernorm|post_attention_layernorm|before_first_addition_layernorm|'
                        r'before_second_addition_layernorm|final_layernorm)\.|^to_logits\.0\.')


def parameter_group(name: str) -> str:
    """``'emb'``, ``'ln'``, ``'attn'``, ``'ff'`` or ``'other'`` for a ruDolphModel parameter name.

    Wrapper prefixes (``module.``, ``_orig_mod.``, FSDP's ``_fsdp_wrapped_module.``) are ignored.
    """
    name = re.sub(r'(^|\.)(module|_orig_mod|_fsdp_wrapped_module|_checkpoint_wrapped_module)\.', r'\1', name)
    if name.split('.')[0].endswith('_embeddings'):
        return 'emb'
    if _LAYERNORM.search(name):
        return 'ln'
    if '.attention.' in name:
        return 'attn'
    if '.mlp.' in name:
        return 'ff'
    return 'other'


def freeze(model: nn.Module, freeze_emb: bool = False, freeze_ln: bool = False, freeze_attn: bool = True,
           freeze_ff: bool = True, freeze_other: bool = False) -> List[str]:
    """Set ``requires_grad`` of each parameter group as asked; returns the names of the frozen parameters.

    Groups: ``emb`` = all ``*_embeddings``; ``ln`` = every LayerNorm (input, post-attention, the
    two sandwich norms, ``final_layernorm`` and ``to_logits.0``); ``attn`` = ``.attention.``
    (query_key_value, dense); ``ff`` = ``.mlp.``; ``other`` = the rest (``to_logits.1``).
    Unlike the original notebooks' version (which tested for the substring ``'attn'``, found in
    no parameter name, so attention was never frozen) every flag freezes exactly its group;
    a parameter of a group whose flag is False is made trainable.
    """
    flags: Dict[str, bool] = {'emb': freeze_emb, 'ln': freeze_ln, 'attn': freeze_attn, 'ff': freeze_ff,
                              'other': freeze_other}
    frozen = []
    for name, param in model.named_parameters():
        is_frozen = flags[parameter_group(name)]
        param.requires_grad_(not is_frozen)
        if is_frozen:
            frozen.append(name)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info('froze %d parameter tensors (%s); %d of %d weights (%.1f%%) stay trainable', len(frozen),
                ', '.join(k for k, v in flags.items() if v) or 'none', trainable, total, 100.0 * trainable / max(total, 1))
    return frozen
