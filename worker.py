"""Run one infraudit-webhooks worker: ``python worker.py`` (settings from INFRAUDIT_* vars)."""

from infraudit.worker import main

if __name__ == "__main__":
    main()
