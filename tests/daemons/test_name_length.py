"""Every name of the zone fits in a DNS name: an inventory is refused exactly when one would
not, and the zones of every accepted one pass the real named-checkzone (which said "ran out
of space" on a 243-character domain that validated)."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clustcontrol.errors import InvalidInputError
from clustcontrol.inventory.checks import MAX_DOMAIN_NAME
from tests.conftest import BASE, inventory_data
from tests.daemons.conftest import inventory, render_into

pytestmark = pytest.mark.daemon


def domain_of(length: int) -> str:
    """A domain of `length` characters: 63-character labels, the last one shorter."""
    labels, left = [], length
    while left > 0:
        size = min(63, left)
        if left - size == 1:  # never leave a lone dot
            size -= 1
        labels.append("d" * size)
        left -= size + 1
    return ".".join(labels)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name_length=st.integers(1, 63), slack=st.integers(-3, 3))
def test_refused_exactly_when_a_name_would_not_fit(
    tmp_path_factory: pytest.TempPathFactory, name_length: int, slack: int
) -> None:
    name = "n" * name_length
    longest = max(name_length, len("hostmaster"), len("updatenode"))
    domain = domain_of(MAX_DOMAIN_NAME - 1 - longest + slack)
    assert len(domain) == MAX_DOMAIN_NAME - 1 - longest + slack
    node = {**BASE["nodes"][0], "name": name}
    cluster = {**BASE["cluster"], "domain": domain}
    data = inventory_data(cluster=cluster, nodes=[node])
    if slack > 0:
        with pytest.raises(InvalidInputError) as info:
            inventory(**data)
        assert info.value.problems[0].startswith("cluster.domain: ")
        return
    tree = tmp_path_factory.mktemp("zones")
    render_into(inventory(**data), tree)
    for zone, origin in ((domain, domain), ("0.168.192.in-addr.arpa", "0.168.192.in-addr.arpa")):
        path = tree / "etc/bind/clustcontrol" / f"db.{zone}"
        result = subprocess.run(
            ["named-checkzone", origin, str(path)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
