"""Package exports imported on first use, so that importing a package (or ``rudolph --help``) does not load torch."""
import importlib
from typing import Any, Callable, Dict, Mapping, Optional, Tuple


def lazy_exports(package: str, namespace: Dict[str, Any],
                 exports: Mapping[str, Tuple[str, Optional[str]]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``name -> (relative module, attribute or None for the module)``."""
    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f'module {package!r} has no attribute {name!r}')
        module_name, attribute = exports[name]
        module = importlib.import_module(module_name, package)
        value = module if attribute is None else getattr(module, attribute)
        namespace[name] = value  # later look-ups skip __getattr__
        return value

    return __getattr__
