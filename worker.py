"""Run one infraudit-webhooks worker: ``python worker.py`` (settings from INFRAUDIT_* vars).

The same process as ``infraudit worker``: :func:`infraudit.cli.processes.worker_main`.
"""

from infraudit.cli.processes import worker_main

if __name__ == "__main__":
    worker_main()
