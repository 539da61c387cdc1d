"""test_soak.py — the suite's soak pass (issue 14): tests/soak/soak.py for 60 s against the
server of this build; it runs in the ASan + UBSan pass only (label asan), where sanitizer
reports, leaks at exit, 5xx answers, unanswered requests, and fd or RSS growth fail it.
Longer: python3 tests/soak/soak.py --seconds N with CLAQ_BIN set to an ASan build."""
# ctest-cost: 65 (about 65 s in its longer pass; ctest -j starts the costliest first)
# ctest-label: asan
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import soak  # noqa: E402

sys.exit(soak.soak(60))
