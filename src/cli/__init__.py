"""The ``infraudit`` command and the code that runs processes: the worker and API processes,
``infraudit up``'s local stack, the local receiver (``infraudit listen``) and the bundled
Temporal binaries. The engine itself (workflows, activities, API, store) does not import it.
"""
