"""Training stage (TensorFlow): the model builders, `train`, `finetune` and `optimize` (pruning, QAT).

Usage: edgemnist train --out runs/train; edgemnist optimize --from runs/train/model.keras --out runs/opt --prune --qat
"""
