"""Operations on a deployed stack: idle-fleet reaping, status, actual-vs-projected cost, spot refresh.

Pure decisions live beside the small boto3/HTTP edges they read from (aws.py, anthropic_admin.py),
so each rule is unit-tested and each edge is tested against moto or a local emulator.
"""
