"""rl-zoo hyperparameter files of the lecture's algorithms, shipped inside the wheel as ``sbx_lecture.zoo_configs``."""
