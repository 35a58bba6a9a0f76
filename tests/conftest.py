"""pytest's set-up for the schedx test suite: the hypothesis profiles, ``ci`` (the default) and
``long`` (``SCHEDX_HYPOTHESIS_PROFILE=long``). The helpers the tests are written with are in twins.py."""

from hypothesis import HealthCheck, settings

from twins import PROFILE

# --------------------------------------------------------------------------------------------
# Hypothesis profiles
# --------------------------------------------------------------------------------------------

_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
# ci: the whole default suite stays well under 3 minutes on 2 cores.
settings.register_profile("ci", max_examples=40, **_COMMON)
# long: >= 10,000 random configurations over tests/test_parity_differential.py (17 tests x 600,
# plus the slow mixed-class test).
settings.register_profile("long", max_examples=600, **_COMMON)
settings.load_profile(PROFILE)
