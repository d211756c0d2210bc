"""Run one infraudit-webhooks worker: ``python worker.py`` (settings from INFRAUDIT_* vars).

The same process as ``infraudit worker`` (:func:`infraudit.cli.processes.worker_main`), run
through the same command, so a misconfiguration ends in one line and exit status 2 here too.
"""

from infraudit.cli.commands import app

if __name__ == "__main__":
    app(["worker"], prog_name="worker.py")
