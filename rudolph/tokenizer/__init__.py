"""ruDALL-E / RuDOLPH text tokenizer, compatible with YouTokenToMe (YTTM) 1.0.6 without needing it.

RuDOLPH reads and writes text with ruDALL-E's YTTM BPE model file ``bpe.model``. ``youtokentome``
no longer builds on current Python, so this package reads the YTTM model file itself and encodes
with HF ``tokenizers``' BPE engine, wrapped so that ids, subwords and decoded text are identical to
youtokentome 1.0.6 for the same model file. One module per job:

* :mod:`.yttm_format`: the model file (parse, read, write, save; :class:`YTTMModelData`,
  :class:`SpecialIds`) and YTTM's word split;
* :mod:`.bpe`: the engine, :class:`BPE` (youtokentome's API, HF ``tokenizers`` with a word cache,
  decoding);
* :mod:`.yttm_merge`: the pure Python port of YTTM's merge loop (BPE-dropout, models HF cannot hold);
* :mod:`.wrapper`: ruDALL-E's :class:`YTTMTokenizerWrapper` and :func:`get_tokenizer`;
* :mod:`.train`: :func:`train_bpe`, a tiny trainer writing YTTM files.
"""
from rudolph.tokenizer.bpe import BPE, OutputType
from rudolph.tokenizer.train import train_bpe

# Public names of the former single module outside __all__, still importable from here.
from rudolph.tokenizer.wrapper import HF_FILENAME, HF_REPO_ID, NAMED_TOKENIZERS, YTTMTokenizerWrapper, get_tokenizer  # noqa: F401
from rudolph.tokenizer.yttm_format import (  # noqa: F401
                          BOS_TOKEN,
                          EOS_TOKEN,
                          PAD_TOKEN,
                          SPACE_TOKEN,
                          UNK_TOKEN,
                          PathLike,
                          SpecialIds,
                          YTTMModelData,
                          parse_yttm_model,
                          read_yttm_model,
                          save_yttm_model,
                          write_yttm_model,
)

__all__ = [
    'BPE', 'NAMED_TOKENIZERS', 'OutputType', 'SPACE_TOKEN', 'SpecialIds', 'YTTMModelData',
    'YTTMTokenizerWrapper', 'get_tokenizer', 'parse_yttm_model', 'read_yttm_model',
    'save_yttm_model', 'train_bpe', 'write_yttm_model',
]
