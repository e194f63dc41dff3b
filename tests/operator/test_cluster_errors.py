"""Which refusals of the API server the operator tries again."""

from __future__ import annotations

from modelserve.operator.cluster import ClusterError


def test_only_a_quota_refusal_among_403s_is_worth_another_try() -> None:
    quota = ClusterError(
        'apply Service m: 403 services "m" is forbidden: exceeded quota: no-services,'
        " requested: services=1, used: services=0, limited: services=0",
        status=403,
    )
    rbac = ClusterError('apply Service m: 403 services "m" is forbidden: User "x"', status=403)
    assert quota.over_quota and not quota.retryable
    assert not rbac.over_quota and not rbac.retryable
    for status in (409, 429, 500, None):
        assert ClusterError("apply Service m", status=status).retryable
