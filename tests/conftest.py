"""Suite-wide settings.

Under CI (CI=true, as .ci/run is run) Hypothesis is derandomized: each run explores the same
examples, so a red build is reproducible and a green one is not luck. Locally it keeps drawing
new examples, which is where new counterexamples are found (and then pinned as explicit tests).
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
