"""schedx's version and the torch releases it supports, declared here once.

setup.py reads this file (without importing schedx, which needs torch) for the package's version and
its torch requirement; `import schedx` checks the installed torch against the same range.
"""
import re

__version__ = "0.1.0"

# schedx mirrors torch.optim.lr_scheduler, private helpers included, so it supports the minor releases
# it is tested on: from TORCH_MIN up to, not including, TORCH_BELOW.
TORCH_MIN = (2, 5)
TORCH_BELOW = (2, 16)
TORCH_RANGE = f">={TORCH_MIN[0]}.{TORCH_MIN[1]},<{TORCH_BELOW[0]}.{TORCH_BELOW[1]}"


def release(version: str) -> tuple[int, ...]:
    """The leading numbers of a version string: "2.13.0+cpu" -> (2, 13, 0), "2.14.0a0+git" -> (2, 14, 0)."""
    match = re.match(r"\d+(\.\d+)*", version)
    return tuple(int(n) for n in match.group().split(".")) if match else ()


def torch_supported(version: str) -> bool:
    """Whether a torch version string lies in TORCH_RANGE (pre-releases of a supported minor count)."""
    return TORCH_MIN <= release(version)[:2] < TORCH_BELOW


def check_torch(version: str) -> None:
    """ImportError naming the installed torch and the supported range, unless `version` is in it."""
    if not torch_supported(version):
        raise ImportError(
            f"schedx {__version__} supports torch{TORCH_RANGE}, but torch {version} is installed: "
            f"install a supported torch (pip install 'torch{TORCH_RANGE}') or a schedx release for "
            f"torch {version}"
        )
