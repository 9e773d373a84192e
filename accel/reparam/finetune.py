"""Moved to :mod:`accel.tuning.repavit_finetune` (CLI: ``accel reparam finetune``).

The old names keep working until accel 0.3.0.
"""

from ..deprecation import moved_names

__getattr__ = moved_names(
    __name__,
    {
        "STUDENT_DIR": "accel.tuning.repavit_finetune",
        "OPTIMIZER_FILE": "accel.tuning.repavit_finetune",
        "STATE_FILE": "accel.tuning.repavit_finetune",
        "distillation_loss": "accel.tuning.repavit_finetune",
        "cosine_lr": "accel.tuning.repavit_finetune",
        "save_training_state": "accel.tuning.repavit_finetune",
        "load_training_state": "accel.tuning.repavit_finetune",
        "finetune": "accel.tuning.repavit_finetune",
        "accuracy": "accel.tuning.repavit_finetune",
        "build_parser": "accel.tuning.repavit_finetune",
        "main": "accel.tuning.repavit_finetune",
    },
)
