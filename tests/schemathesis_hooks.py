"""Schemathesis hooks for tests/test_openapi.py: values for our own OpenAPI formats.

Loaded by the schemathesis CLI through ``SCHEMATHESIS_HOOKS=tests.schemathesis_hooks``. The
``webhook-url`` format names the rules of ``infraudit.urls``, which no pattern can state; this
strategy draws URLs those rules accept in dev mode (where the test runs): http or https, DNS
names of one to three labels, an optional port, a plain path, an optional query.
"""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

from infraudit.urls import OPENAPI_FORMAT

_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_label = st.builds(
    lambda first, middle, last: first + middle + last,
    st.sampled_from(_ALNUM),
    st.text(alphabet=_ALNUM + "-", max_size=10),
    st.sampled_from(_ALNUM),
)
_top_label = st.from_regex(r"[a-z][a-z0-9]{1,8}", fullmatch=True)
_host = st.builds(
    lambda labels, top: ".".join([*labels, top]), st.lists(_label, max_size=2), _top_label
)
_port = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
_path = st.from_regex(r"(/[A-Za-z0-9._~-]{0,12}){0,3}", fullmatch=True)
_query = st.one_of(st.just(""), st.from_regex(r"\?[a-z]{1,8}=[A-Za-z0-9]{0,12}", fullmatch=True))

schemathesis.openapi.format(
    OPENAPI_FORMAT,
    st.builds(
        lambda scheme, host, port, path, query: f"{scheme}://{host}{port}{path}{query}",
        st.sampled_from(["http", "https"]),
        _host,
        _port,
        _path,
        _query,
    ),
)
