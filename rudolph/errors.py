"""One error hierarchy for everything the library refuses.

Every error the package raises on purpose is a :class:`RudolphError`. Each subclass also
derives from the built-in exception that code written for the original package caught
(``ValueError``, ``FileNotFoundError``, ...), so ``except ValueError`` keeps working.
Messages name the bad value and what was expected.
"""

__all__ = ['RudolphError', 'ConfigError', 'CheckpointError', 'CheckpointMismatchError', 'CorruptCheckpointError',
           'UnsafeCheckpointError', 'WeightsNotFoundError', 'InputError', 'DataError', 'ImageFileError',
           'ResourceError', 'MissingDependencyError', 'Cancelled']


class RudolphError(Exception):
    """Base of every error raised on purpose by ``rudolph``."""


class ConfigError(RudolphError, ValueError):
    """An argument, option or configuration value that cannot work (names the value and what was expected)."""


class InputError(RudolphError, ValueError):
    """A task input (text, image, class list, template) that cannot be used."""


class DataError(InputError):
    """A fine-tuning or dataset row, file or column that cannot be used."""


class ImageFileError(InputError, OSError):
    """A picture file that is missing or cannot be decoded (names the file; also an ``OSError``, as PIL's own)."""


class CheckpointError(RudolphError, ValueError):
    """A weights file that cannot be loaded (names the file)."""


class CheckpointMismatchError(CheckpointError, RuntimeError):
    """A checkpoint's state dict does not fit the model built from the config (also a RuntimeError, like torch's own)."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file cannot be read at all (empty, truncated, corrupt, not a checkpoint)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint would need to run code from the file to be read (a pickle of arbitrary objects)."""


class WeightsNotFoundError(RudolphError, FileNotFoundError):
    """Weights (model, tokenizer, VAE) that are neither local nor downloadable; says how to get them."""


class ResourceError(RudolphError, MemoryError):
    """A request that would not fit in the available memory (says what would fit)."""


class MissingDependencyError(RudolphError, ImportError):
    """An optional package that a feature needs is not installed (says what to ``pip install``)."""


class Cancelled(RudolphError, RuntimeError):
    """Work stopped on request (e.g. the web app's Stop button) before it finished."""
