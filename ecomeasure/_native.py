"""The compiled core, ``_ecomeasure`` (built from csrc/), as the package sees it.

The core is installed as a top-level module beside the package, never inside it, so that
``python -m ecomeasure...`` run from a source checkout (whose ``ecomeasure/`` holds no build)
uses the installed core. This module is the one place that imports it.
"""
from __future__ import annotations

import os
import warnings

try:
    from _ecomeasure import *  # noqa: F403 - the core's whole interface, re-exported
    from _ecomeasure import __version__ as core_version
except ImportError as error:  # pragma: no cover - exercised only without an install
    raise ImportError(
        "ecomeasure: its compiled core (_ecomeasure) is not installed; run `pip install .` "
        f"in the checkout ({error})") from None

from . import __version__

if core_version != __version__:
    # A checkout newer or older than the build it runs against: it may still work, but the
    # user should know which is which before trusting a figure.
    warnings.warn(f"ecomeasure {__version__} at {os.path.dirname(os.path.dirname(__file__))} runs "
                  f"with compiled core {core_version}; reinstall it there with `pip install .`",
                  RuntimeWarning, stacklevel=2)
