"""The platform's inference service: serves a policy bundle's actions over HTTP (issue 24).

Its own small program (``python -m inference.service``), standard library only plus the
policy arithmetic in :mod:`inference.policy`: no Prefect, no CityLearn, no numpy, so it starts
in well under a second and answers an action request in well under a millisecond of compute.
"""
