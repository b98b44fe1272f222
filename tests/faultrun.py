"""`python -m faultrun ARGS`: `regbench ARGS` with the write faults of REGBENCH_TEST_FAULTS
injected in this process (tests/faultplan.py)."""

import faultplan

faultplan.install()

from regbench.cli import main  # noqa: E402  (after the patches, as a fresh process is)

raise SystemExit(main())
