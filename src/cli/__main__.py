"""``python -m infraudit.cli``: the ``infraudit`` command, as ``infraudit up`` runs its children."""

from infraudit.cli.commands import app

app()
