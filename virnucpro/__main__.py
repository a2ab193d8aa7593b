import time

# Wall-clock start of the command, before torch is imported: run.json reports start-up against it.
STARTED = time.time()

from virnucpro.cli import main  # noqa: E402

raise SystemExit(main())
