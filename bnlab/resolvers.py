"""OmegaConf resolvers the configs use, registered when ``bnlab`` is imported
(composing ``bnlab.configs`` imports it, so every config load sees them)."""

from __future__ import annotations

from omegaconf import OmegaConf

from bnlab.paths import absolute

# ${linear_lr:base_lr,base_batch,batch}: lr scaled linearly with the batch size (Goyal et al. 2017),
# for sweeps over data.batch_size at equal epochs (experiment=batch_size_dependence).
if not OmegaConf.has_resolver("linear_lr"):
    OmegaConf.register_new_resolver("linear_lr", lambda lr, ref, batch: float(lr) * float(batch) / float(ref))

# ${abspath:PATH}: PATH made absolute against the working directory (configs/data: a relative
# BNLAB_DATA_DIR or ./data means where the user started bnlab; see bnlab/paths.py).
if not OmegaConf.has_resolver("abspath"):
    OmegaConf.register_new_resolver("abspath", lambda p: absolute(str(p)))
