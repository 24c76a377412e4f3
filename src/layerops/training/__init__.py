"""The training layer: data → validation → cleaning → split → candidates → selection → bundle.

Import `layerops.training.pipeline.train` to run a spec; the submodules are its steps.
"""

import os

# OpenMP threads (scikit-learn, LightGBM, XGBoost) spin while they wait for work by default; with
# several trainings on few cores the spinning threads take the cores from the working ones. Four
# LightGBM trainings at once on 2 cores took 102 s each with spinning threads, 11-15 s with
# passive ones (5-6 s alone either way). The runtime reads the variable once, when it loads
# (importing scikit-learn), so it is set before any submodule imports it; a user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
