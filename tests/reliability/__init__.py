"""Reliability and security tests (issue 8): faults on the real control plane, hostile input.

Each test records what it tried in a JSON results file (see ``recording.py``);
``python -m tests.reliability.report`` turns that file into docs/reliability.md.
"""
