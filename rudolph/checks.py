"""Argument checks shared by every layer: each raises a :mod:`rudolph.errors` error naming the bad value."""
import contextlib
import contextvars
import math
import shlex
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence

from rudolph.errors import ConfigError, InputError

__all__ = ['check_count', 'check_fraction', 'check_text', 'check_texts', 'check_classes', 'check_template',
           'warn_ignored_seed', 'check_sampling_args', 'command_line_options', 'setting']

# Messages name a setting as its reader passes it: the Python keyword (``bad_rows='skip'``) unless the
# command line runs the code (:func:`command_line_options`): then its option (``--bad-rows skip``).
_COMMAND_LINE: contextvars.ContextVar[bool] = contextvars.ContextVar('command_line_options', default=False)
#: keywords whose option is not ``--`` + the keyword with ``-`` for ``_``
_OPTION_NAMES = {'batch_size': '--bs', 'out_dir': '--out', 'checkpoint_path': '--checkpoint'}
_NO_VALUE = object()


@contextlib.contextmanager
def command_line_options() -> Iterator[None]:
    """Within the block, :func:`setting` spells settings as command-line options (the CLI runs in one)."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def setting(name: str, value: Any = _NO_VALUE, *, metavar: bool = False) -> str:
    """The setting ``name`` (with ``value``) as a message should name it: ``bad_rows='skip'`` for Python
    callers, ``--bad-rows skip`` inside :func:`command_line_options`; ``metavar``: ``value`` is a placeholder
    written as it is (``checkpoint=PATH``, ``--checkpoint PATH``)."""
    if not _COMMAND_LINE.get():
        return name if value is _NO_VALUE else f'{name}={value if metavar else repr(value)}'
    option = _OPTION_NAMES.get(name, '--' + name.replace('_', '-'))
    return option if value is _NO_VALUE else f'{option} {value if metavar else shlex.quote(str(value))}'


def warn_ignored_seed(function: str, seed) -> None:
    """Warn that ``function``'s ``seed`` argument has no effect (kept so that old calls still run)."""
    if seed is not None:
        warnings.warn(f'{function}(seed={seed!r}): scoring is deterministic, so seed has no effect; '
                      'it will be removed, stop passing it', FutureWarning, stacklevel=3)


def check_count(name: str, value) -> None:
    """A ``ConfigError`` naming ``name`` unless ``value`` is a positive int (``bool`` is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f'{name} must be a positive int, got {value!r}')


def check_fraction(name: str, value, what: str = 'in [0, 1]') -> None:
    """A ``ConfigError`` naming ``name`` unless ``value`` is a number in [0, 1] (a weight, a quantile)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f'{name} must be {what}, got {value!r}')


def check_text(name: str, value, allow_empty: bool = False) -> str:
    """``value.lower().strip()``; ``TypeError`` for a non-string, ``ValueError`` for an empty one."""
    if not isinstance(value, str):
        raise TypeError(f'{name} must be a str, got {type(value).__name__}')
    value = value.lower().strip()
    if not value and not allow_empty:
        raise InputError(f'{name} must be a non-empty string, got {value!r}')
    return value


def check_texts(name: str, values) -> List[str]:
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) == 0:
        raise InputError(f'{name} must be a non-empty list of strings, got {values!r}')
    return [check_text(f'{name}[{i}]', v) for i, v in enumerate(values)]


def check_classes(classes) -> List[str]:
    """Class names as non-empty, distinct strings (after lower-casing and stripping)."""
    if isinstance(classes, str) or not isinstance(classes, Sequence) or len(classes) == 0:
        raise InputError(f'classes must be a non-empty list of class names, got {classes!r}')
    names = [check_text(f'classes[{i}]', c) for i, c in enumerate(classes)]
    seen: Dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise InputError(f'classes must be distinct: classes[{seen[name]}] and classes[{i}] are both {name!r}')
        seen[name] = i
    return names


def check_template(name: str, template, default: str = '{}', slot: Optional[str] = None, what: str = 'class name',
                    required: bool = True) -> str:
    """A template whose only replacement field is ``{}`` (``slot=None``) or ``{slot}``; the one check of all templates.

    ``required``: the field must be there (otherwise the template is used as it is).
    """
    template = default if template is None else template
    field = '{}' if slot is None else '{' + slot + '}'
    if not isinstance(template, str):
        raise TypeError(f'{name} must be a str with a {field} slot, got {type(template).__name__}')
    try:
        a, b = (template.format(v) if slot is None else template.format(**{slot: v}) for v in ('\x00a', '\x00b'))
    except (IndexError, KeyError, ValueError, AttributeError) as error:
        raise InputError(f'{name} must have exactly one {field} slot for the {what} (and no other braces; write '
                         f'{{{{ }}}} for a literal brace), got {template!r} ({type(error).__name__}: {error})') from None
    if required and a == b:
        example = f"'на картинке {field}'" if slot in (None, 'text') else repr(f'вопрос: {field} ответ:')
        raise InputError(f"{name} must contain '{field}' where the {what} goes, got {template!r} (e.g. {example})")
    return template


def check_sampling_args(top_k: int, top_p: float, temperature: float = 1.0) -> None:
    """Raise ``ConfigError`` (a ``ValueError``) naming the bad value if a sampling argument is out of range."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ConfigError(f'top_k must be an int >= 0 (0 disables top-k), got {top_k!r}')
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0.0 < top_p <= 1.0:
        raise ConfigError(f'top_p must be in (0, 1] (1 disables nucleus filtering), got {top_p!r}')
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not temperature > 0 or math.isinf(temperature):
        raise ConfigError(f'temperature must be a finite number > 0, got {temperature!r}')
