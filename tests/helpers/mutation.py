"""Whether the library under test is mutmut's copy (``make mutation``).

mutmut routes every function of its copy through a trampoline, one extra stack frame,
so a warning's ``stacklevel`` then names the trampoline's file instead of the caller's:
tests of which line a warning names check it only on the real package.
"""

from __future__ import annotations

from pathlib import Path

import ebmlab

UNDER_MUTATION_TESTING = "mutants" in Path(ebmlab.__file__).parts
