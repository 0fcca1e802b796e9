"""ruDolphModel: embeddings of the three sequence parts, the sparse transformer, logits and loss."""
import os
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from rudolph.model import folder
from rudolph.model.cache import KVCache
from rudolph.model.checkpoint import skip_init
from rudolph.model.config import CONSTRUCTOR_ORDER, RudolphConfig
from rudolph.model.transformer import Linear, SparseTransformer, linear

__all__ = ['ruDolphModel', 'skip_init']

ModelOutput = Union[Tuple[torch.Tensor, Optional[KVCache]], Tuple[torch.Tensor, Dict[str, torch.Tensor]], tuple]


def _config_and_device(args: tuple, kwargs: Dict[str, Any]) -> Tuple[RudolphConfig, Any]:
    """The config and device of either constructor form (a config, or the original arguments)."""
    if args and isinstance(args[0], RudolphConfig):
        if len(args) > 2 or set(kwargs) - {'device'}:
            raise TypeError('ruDolphModel(config, device=...) takes no other arguments; use config.replace(...)')
        return args[0], args[1] if len(args) > 1 else kwargs.get('device', 'cpu')
    if len(args) > len(CONSTRUCTOR_ORDER):
        raise TypeError(f'ruDolphModel takes at most {len(CONSTRUCTOR_ORDER)} positional arguments, got {len(args)}')
    params = dict(zip(CONSTRUCTOR_ORDER, args))
    twice = sorted(set(params) & set(kwargs))
    if twice:
        raise TypeError(f'ruDolphModel got multiple values for {twice}')
    params.update(kwargs)
    unknown = sorted(set(params) - set(CONSTRUCTOR_ORDER))
    if unknown:
        raise TypeError(f'ruDolphModel got unexpected keyword arguments {unknown}')
    if 'device' not in params:
        raise TypeError("ruDolphModel missing the argument 'device' (or pass a RudolphConfig)")
    device = params.pop('device')
    return RudolphConfig.from_params(params), device


#: the original model's attributes, each a value of its :class:`RudolphConfig` (attribute -> config field)
_CONFIG_ATTRIBUTES = {
    'num_layers': 'num_layers', 'hidden_size': 'hidden_size', 'num_attention_heads': 'num_attention_heads',
    'l_text_seq_length': 'L', 'r_text_seq_length': 'R', 'image_tokens_per_dim': 'N', 'image_seq_length': 'N2',
    'total_seq_length': 'S', 'text_special_tokens': 'text_special_tokens',
    'image_special_tokens': 'image_special_tokens', 'vocab_size': 'V', 'image_vocab_size': 'image_vocab_total',
    'plain_image_vocab_size': 'image_vocab', 'kernel_size': 'kernel_size', 'last_kernel_size': 'last_kernel_size',
    'gradient_checkpointing': 'gradient_checkpointing',
}


class ruDolphModel(nn.Module):
    """RuDOLPH: ``[left text (L) | image tokens (N*N) | right text (R)]`` with one decoder.

    Text ids live in ``[0, V)`` with ``V = vocab_size + text_special_tokens``; image ids
    ``k`` are logit ``V + k``. See ``SPEC.md`` sections 2-5 for the exact math.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        """``ruDolphModel(config, device='cpu')`` with a :class:`RudolphConfig`, or the original
        ``ruDolphModel(device, num_layers, vocab_size, ...)`` with the constructor arguments."""
        super().__init__()
        config, device = _config_and_device(args, kwargs)
        self.config = config
        self.device = device
        for name, source in _CONFIG_ATTRIBUTES.items():
            setattr(self, name, getattr(config, source))
        self.total_vocab_size = self.vocab_size + self.image_vocab_size
        hidden_size, l_text_seq_length, r_text_seq_length = config.hidden_size, config.L, config.R
        image_tokens_per_dim = config.N
        with skip_init():  # reset_parameters() below is the one init
            self.text_embeddings = nn.Embedding(self.vocab_size, hidden_size)
            self.image_embeddings = nn.Embedding(self.image_vocab_size, hidden_size)
            self.l_text_pos_embeddings = nn.Embedding(l_text_seq_length + 1, hidden_size)
            self.r_text_pos_embeddings = nn.Embedding(r_text_seq_length + 1, hidden_size)
            self.image_row_embeddings = nn.Embedding(image_tokens_per_dim, hidden_size)
            self.image_col_embeddings = nn.Embedding(image_tokens_per_dim, hidden_size)
            # Declared but never applied, as in the released training code.
            self.embedding_dropout = nn.Dropout(config.embedding_dropout_prob)
            self.to_logits = nn.Sequential(
                nn.LayerNorm(hidden_size),
                Linear(hidden_size, self.total_vocab_size),  # ours: the kernel rule, packed bf16 weights
            )
            self.transformer = SparseTransformer(
                config.num_layers, hidden_size, config.num_attention_heads, config.attention_dropout_prob,
                config.output_dropout_prob, l_text_seq_length=l_text_seq_length, r_text_seq_length=r_text_seq_length,
                image_tokens_per_dim=image_tokens_per_dim, kernel_size=config.kernel_size,
                last_kernel_size=config.last_kernel_size, cogview_sandwich_layernorm=config.cogview_sandwich_layernorm,
                cogview_pb_relax=config.cogview_pb_relax, mlp_activation=config.mlp_activation,
            )
        self._compiled_decode = None
        if not any(p.is_meta for p in self.parameters()):
            self.reset_parameters()

    # ------------------------------------------------------------------ setup
    @torch.no_grad()
    def reset_parameters(self, std: float = 0.02):
        """GPT-style random init (normal(0, std) weights, zero biases, unit LayerNorms)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.normal_(0.0, std)
                if getattr(module, 'bias', None) is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()

    def get_param(self, item: str):
        """Config values the pipelines read: ``vocab_size``, ``l_text_seq_length``, ``image_seq_length``, ..."""
        if not hasattr(self, item):
            raise AttributeError(f'ruDolphModel has no parameter {item!r}')
        return getattr(self, item)

    def to(self, *args, **kwargs):
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
        if device is not None:
            self.device = device
        return super().to(*args, **kwargs)

    @property
    def dtype(self) -> torch.dtype:
        # The head's LayerNorm: the activation dtype also when the head's weights are int8.
        return self.to_logits[0].weight.dtype

    def new_cache(self, batch_size: int, max_length: Optional[int] = None,
                  dtype: Optional[torch.dtype] = None) -> KVCache:
        """A preallocated key/value cache for ``batch_size`` sequences of up to ``max_length`` tokens."""
        weight = self.to_logits[0].weight  # activation dtype (an int8 head has int8 weights)
        return KVCache(self.num_layers, batch_size, self.num_attention_heads,
                       max_length or self.total_seq_length, self.hidden_size // self.num_attention_heads,
                       device=weight.device, dtype=dtype or weight.dtype)

    # ---------------------------------------------------------------- forward
    def embed(self, input_ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Embeddings of ``input_ids`` placed at absolute positions ``start .. start+n``."""
        b, n = input_ids.shape
        L, N, N2 = self.l_text_seq_length, self.image_tokens_per_dim, self.image_seq_length
        if start < 0 or start + n > self.total_seq_length:
            raise ValueError(f'positions {start}..{start + n} do not fit the sequence of {self.total_seq_length} '
                             f'tokens (L={L}, image={N2}, R={self.r_text_seq_length})')
        pos = torch.arange(start, start + n, device=input_ids.device)
        image_from = min(max(L - start, 0), n)
        right_from = min(max(L + N2 - start, 0), n)
        parts = []
        if image_from > 0:
            ids, p = input_ids[:, :image_from], pos[:image_from]
            # A left pad at position p becomes its own learned token V - L + p.
            ids = torch.where(ids == 0, self.vocab_size - L + p, ids)
            parts.append(self.text_embeddings(ids) + self.l_text_pos_embeddings(p))
        if right_from > image_from:
            j = pos[image_from:right_from] - L
            parts.append(self.image_embeddings(input_ids[:, image_from:right_from])
                         + self.image_row_embeddings(j // N) + self.image_col_embeddings(j % N))
        if n > right_from:
            p = pos[right_from:] - L - N2
            parts.append(self.text_embeddings(input_ids[:, right_from:]) + self.r_text_pos_embeddings(p))
        e = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        # Same value, gradient scaled by 0.1 (CogView's embedding-gradient shrink).
        return e * 0.1 + e.detach() * 0.9

    def embed_one(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Embeddings of ``tokens`` (``[b, 1]``) at position ``pos`` given as a 0-d tensor.

        Branch-free (all three parts looked up, one selected) so that the shapes and the
        graph do not depend on the position: the static decode step needs that.
        """
        L, N, N2, V = self.l_text_seq_length, self.image_tokens_per_dim, self.image_seq_length, self.vocab_size
        left_ids = torch.where(tokens == 0, V - L + pos.clamp(max=L - 1), tokens).clamp(max=V - 1)
        left = self.text_embeddings(left_ids) + self.l_text_pos_embeddings(pos.clamp(max=L))
        j = (pos - L).clamp(0, N2 - 1)
        image = (self.image_embeddings(tokens.clamp(max=self.image_vocab_size - 1))
                 + self.image_row_embeddings(j // N) + self.image_col_embeddings(j % N))
        right = (self.text_embeddings(tokens.clamp(max=V - 1))
                 + self.r_text_pos_embeddings((pos - L - N2).clamp(0, self.r_text_seq_length)))
        e = torch.where(pos < L, left, torch.where(pos < L + N2, image, right))
        return e * 0.1 + e.detach() * 0.9

    def decode_one(self, tokens: torch.Tensor, input_pos: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Final-normalised hidden state ``[b, 1, h]`` of one token per row at ``input_pos`` (0-d LongTensor).

        The static-shape step (attention over the whole cache buffer, unwritten slots masked):
        same result as ``hidden(tokens, int(input_pos), cache)`` up to float rounding, and what
        :meth:`compile_decode` compiles once for all positions. It writes the keys/values at
        ``input_pos`` but leaves ``cache.length`` to the caller (:meth:`hidden` advances it).
        """
        cache.zero_unwritten()  # it reads the whole buffer: slots never written must be zeros, not garbage
        step = self._compiled_decode or self._decode_step
        return step(tokens, input_pos, cache)

    def _decode_step(self, tokens: torch.Tensor, input_pos: torch.Tensor, cache: KVCache) -> torch.Tensor:
        return self.transformer.decode_static(self.embed_one(tokens, input_pos), input_pos, cache)

    def save_pretrained(self, save_directory: Union[str, os.PathLike]) -> str:
        """Save ``config.json`` + ``model.safetensors`` (the model alone; :mod:`rudolph.model.folder`) into
        ``save_directory``, replaced whole; returns its path. :meth:`from_pretrained` loads it back; the
        tokenizer, VQGAN and model card come with ``Components.save_pretrained``."""
        return folder.save_model(self, save_directory)

    @classmethod
    def from_pretrained(cls, path_or_repo_id: Union[str, os.PathLike], *, dtype: Union[None, str, torch.dtype] = None,
                        quantize: Optional[str] = None, device: Union[str, torch.device] = 'cpu', fp16: bool = False,
                        cache_dir: Optional[str] = None, **model_kwargs: Any) -> 'ruDolphModel':
        """The model a :meth:`save_pretrained` folder (or a hub repository of one) holds, in eval mode.

        Reads its ``config.json`` and weights only (never the tokenizer or the VQGAN). ``dtype``,
        ``quantize`` and ``fp16`` as in ``get_rudolph_model``: an int8 folder loads as int8 (the same
        logits as the model saved), float weights load in ``dtype`` (float32 by default, whatever
        ``torch_dtype`` they were saved in). ``model_kwargs`` override constructor arguments (dropout...).
        """
        return folder.load_model(cls, path_or_repo_id, device=device, dtype=dtype, quantize=quantize, fp16=fp16,
                                 cache_dir=cache_dir, model_kwargs=model_kwargs)

    def compile_decode(self, mode: Optional[str] = None, **compile_kwargs) -> 'ruDolphModel':
        """Compile :meth:`decode_one` with ``torch.compile``; :meth:`hidden` then runs it for decode steps.

        Which calls take the compiled step is :meth:`runs_compiled_step`. ``mode='reduce-overhead'``
        adds CUDA graphs on GPU. The first step of each batch size compiles (seconds to
        minutes); the rest replay. Returns ``self``.
        """
        self._compiled_decode = torch.compile(self._decode_step, mode=mode, dynamic=False, **compile_kwargs)
        return self

    def runs_compiled_step(self, n_new: int, cache: Optional[KVCache], attention_mask: Optional[torch.Tensor] = None,
                           return_hidden_states: bool = False) -> bool:
        """Whether :meth:`hidden` runs the compiled :meth:`decode_one` for this call (the one rule).

        Only after :meth:`compile_decode`, and only for a decode step: one new token, with a
        cache, no ``attention_mask``, no per-layer hidden states and no gradient. Every
        other call runs the eager forward.
        """
        return (self._compiled_decode is not None and cache is not None and n_new == 1
                and attention_mask is None and not return_hidden_states and not torch.is_grad_enabled())

    def hidden(self, input_ids: torch.Tensor, start: int = 0, cache: Optional[KVCache] = None,
               attention_mask: Optional[torch.Tensor] = None,
               return_hidden_states: bool = False) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Final-normalised hidden states of ``input_ids`` at positions ``start..start+n``.

        ``attention_mask`` is a boolean ``[b|1, 1, n, start+n]`` tensor (rows of the new
        positions); a ``cache`` must already hold positions ``0..start`` and holds
        ``0..start+n`` afterwards (this is the one place its length advances). See
        :meth:`runs_compiled_step` for when the compiled decode step is used.
        """
        if cache is not None and cache.length != start:
            raise ValueError(f'cache holds {cache.length} positions but the input starts at position {start}')
        if cache is not None and cache.batch_size != input_ids.shape[0]:
            raise ValueError(f'cache batch size {cache.batch_size} != input batch size {input_ids.shape[0]}')
        if self.runs_compiled_step(input_ids.shape[1], cache, attention_mask, return_hidden_states):
            h, hidden_states = self.decode_one(input_ids, torch.tensor(start, device=input_ids.device), cache), []
        else:
            h, hidden_states = self.transformer(self.embed(input_ids, start), attention_mask, cache=cache, start=start,
                                                gradient_checkpointing=bool(self.gradient_checkpointing),
                                                return_hidden_states=return_hidden_states)
        if cache is not None:
            cache.length = start + input_ids.shape[1]
        return h, hidden_states

    def prefill(self, input_ids: torch.Tensor, cache: KVCache, vocab: Optional[slice] = None) -> torch.Tensor:
        """Run ``input_ids`` (``[b, n]``) into ``cache`` after its ``cache.length`` positions.

        Returns the logits of the last position only (``[b, classes in vocab]``): the
        next-token distribution. One new token is a decode step (see :meth:`runs_compiled_step`).
        """
        h, _ = self.hidden(input_ids, cache.length, cache)
        return self.logits(h[:, -1], vocab)

    def logits(self, hidden: torch.Tensor, vocab: Optional[slice] = None) -> torch.Tensor:
        """``to_logits`` of ``hidden``, optionally only for the classes in ``vocab`` (a slice)."""
        norm, lin = self.to_logits
        x = norm(hidden)
        if vocab is None:
            return lin(x)
        if hasattr(lin, 'sliced'):  # ours (Linear) and the quantised heads (rudolph.model.quant)
            return lin.sliced(x, vocab)
        return linear(x, lin.weight[vocab], lin.bias[vocab])  # a plain nn.Linear put in by the user

    def forward(self,
                input_ids: torch.Tensor,
                attention_mask: Optional[torch.Tensor] = None,
                return_loss: bool = False,
                use_cache: bool = False,
                cache: Optional[KVCache] = None,
                lt_loss_weight: float = 1,
                img_loss_weight: float = 7,
                rt_loss_weight: float = 1,
                return_hidden_states: bool = False,
                first_image_token: bool = False) -> ModelOutput:
        """Reference-compatible forward.

        Returns ``(logits, cache)``, or ``(loss, loss_values)`` with ``return_loss=True``,
        plus the per-layer hidden states when ``return_hidden_states=True``. With
        ``use_cache=True`` the positions already in ``cache`` are not recomputed and the
        returned logits cover only the new positions (``logits[:, -1]`` is the next-token
        distribution either way). ``first_image_token``: see :meth:`loss`.
        """
        self.check_input_ids(input_ids)
        b, s = input_ids.shape
        start = 0
        if (use_cache or cache is not None) and not return_loss:
            if cache is None:
                cache = self.new_cache(b)
            start = cache.length
            if start >= s:
                raise ValueError(f'input has {s} tokens, all already in the cache ({start}); pass at least one new token')
        else:
            cache = None
        mask = None
        if attention_mask is not None:
            if attention_mask.dim() != 4 or attention_mask.shape[-1] < s or attention_mask.shape[-2] < s:
                raise ValueError(f'attention_mask must be [b, 1, >={s}, >={s}], got {tuple(attention_mask.shape)}')
            mask = attention_mask[:, :, start:s, :s] != 0
        hidden, hidden_states = self.hidden(input_ids[:, start:], start, cache, mask, return_hidden_states)
        logits = self.logits(hidden)
        if return_loss:
            outputs = self.loss(input_ids, logits, lt_loss_weight, img_loss_weight, rt_loss_weight, first_image_token)
        else:
            outputs = (logits, cache)
        if return_hidden_states:
            outputs += (hidden_states,)
        return outputs

    def check_input_ids(self, input_ids: torch.Tensor) -> None:
        """Raise a ``ValueError``/``TypeError`` naming the problem if ``input_ids`` cannot be a RuDOLPH sequence."""
        if not torch.is_tensor(input_ids):
            raise TypeError(f'input_ids must be a torch.Tensor, got {type(input_ids).__name__}')
        if input_ids.dtype not in (torch.long, torch.int, torch.int16, torch.uint8):
            raise TypeError(f'input_ids must hold integer token ids (torch.long), got dtype {input_ids.dtype}')
        if input_ids.dim() != 2:
            raise ValueError(f'input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}')
        L, N2, S = self.l_text_seq_length, self.image_seq_length, self.total_seq_length
        s = input_ids.shape[1]
        if not 0 < s <= S:
            raise ValueError(f'input_ids has {s} positions; expected 1..{S} (L={L} + image {N2} + R={S - L - N2})')
        for name, part, limit in (('left text', input_ids[:, :L], self.vocab_size),
                                  ('image', input_ids[:, L:L + N2], self.image_vocab_size),
                                  ('right text', input_ids[:, L + N2:], self.vocab_size)):
            if part.numel() and (int(part.min()) < 0 or int(part.max()) >= limit):
                raise ValueError(f'{name} ids must be in [0, {limit}), got values in '
                                 f'[{int(part.min())}, {int(part.max())}]')

    def loss(self, input_ids: torch.Tensor, logits: torch.Tensor, lt_loss_weight: float = 1,
             img_loss_weight: float = 7, rt_loss_weight: float = 1,
             first_image_token: bool = False) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Weighted cross-entropy over the parts present in ``input_ids`` (SPEC section 5).

        The published loss never scores the *first* image token with image logits (its image
        part starts at the second token), so text-to-image sampling draws that token from an
        untrained distribution. ``first_image_token=True`` adds it to the image part (scored
        from the last left-text position, where generation samples it); the default keeps
        the reference loss exactly.
        """
        L, N2, R, V = self.l_text_seq_length, self.image_seq_length, self.r_text_seq_length, self.vocab_size
        s = input_ids.shape[1]
        if s not in (L, L + N2, L + N2 + R):
            raise ValueError(f'the loss needs whole parts: sequence length {L} (left text), {L + N2} (+ image) '
                             f'or {L + N2 + R} (+ right text), got {s}')
        has_image, has_right = s > L, s > L + N2
        lt = input_ids[:, :L]
        lt = torch.where(lt == 0, V - L + torch.arange(L, device=lt.device), lt)
        image_ids, r_text = input_ids[:, L:L + N2], input_ids[:, L + N2:]
        labels = torch.cat((lt[:, 1:], image_ids, r_text), dim=1)
        logits = logits.transpose(1, 2)
        l_len = L if has_image else L - 1

        # The last left position is scored against the first image id with text logits (the
        # reference loss, kept for parity); an id beyond the text vocabulary (a model with more
        # image codes than text ids) cannot be a text class, so that position is skipped.
        l_labels = labels[:, :l_len].masked_fill(labels[:, :l_len] >= V, -100)
        parts = {'l_text_loss': (lt_loss_weight, lambda: F.cross_entropy(
            logits[:, :V, :l_len].float(), l_labels, ignore_index=-100))}
        if has_image:
            first = L - 1 if first_image_token else L
            parts['image_loss'] = (img_loss_weight, lambda: F.cross_entropy(
                logits[:, V:, first:L + N2 - 1].float(), image_ids[:, first - L + 1:]))
        if has_right:
            parts['r_text_loss'] = (rt_loss_weight, lambda: F.cross_entropy(
                logits[:, :V, -R:-1].float(), r_text[:, 1:], ignore_index=0))
        if not any(w for w, _ in parts.values()):
            raise ValueError(f'all loss weights of the present parts {list(parts)} are zero')
        total, weight_sum = 0.0, 0.0
        values = {k: torch.zeros((), device=logits.device) for k in ('l_text_loss', 'image_loss', 'r_text_loss')}
        for name, (weight, compute) in parts.items():
            value = compute()
            values[name] = value.detach().float()
            if weight:
                total = total + weight * value
                weight_sum += weight
        return total / weight_sum, values
