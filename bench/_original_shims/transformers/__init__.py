"""Stand-in for ``transformers`` inside the ORIGINAL rudolph's benchmark venv only.

rudolph==0.0.1rc10 (``rudolph/api.py``) does ``import transformers`` and calls
``transformers.top_k_top_p_filtering``, which transformers removed (4.40). Instead of
installing the pinned transformers~=4.10.2 (and its old tokenizers build), this module
supplies just that function, with the legacy in-place semantics (top-k first, then
nucleus; the token that crosses ``top_p`` is kept). It is put on ``sys.path`` by
``bench/_original_shims/orig_worker.py`` and never seen by our own package.
"""
import torch
import torch.nn.functional as F

__version__ = '4.10.2+rudolph-bench-shim'


def top_k_top_p_filtering(logits, top_k=0, top_p=1.0, filter_value=-float('Inf'), min_tokens_to_keep=1):
    if top_k > 0:
        top_k = min(max(top_k, min_tokens_to_keep), logits.size(-1))
        indices_to_remove = logits < torch.topk(logits, top_k)[0][..., -1, None]
        logits[indices_to_remove] = filter_value
    if top_p < 1.0:
        sorted_logits, sorted_indices = torch.sort(logits, descending=True)
        cumulative_probs = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
        sorted_indices_to_remove = cumulative_probs > top_p
        if min_tokens_to_keep > 1:
            sorted_indices_to_remove[..., :min_tokens_to_keep] = 0
        sorted_indices_to_remove[..., 1:] = sorted_indices_to_remove[..., :-1].clone()
        sorted_indices_to_remove[..., 0] = 0
        indices_to_remove = sorted_indices_to_remove.scatter(1, sorted_indices, sorted_indices_to_remove)
        logits[indices_to_remove] = filter_value
    return logits
