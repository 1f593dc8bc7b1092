"""VLM next-token training (pretrain, midtrain) and VLA policy training (train-policy), on one driver with
resumable, atomic checkpoints.

    from vlm2vla.training.next_token import pretrain, midtrain, train_next_token
    from vlm2vla.training.next_token_config import PretrainConfig, MidtrainConfig
    from vlm2vla.training.train_policy import train_policy
    from vlm2vla.training.train_policy_config import TrainPolicyConfig

Modules: driver (one training run: resume, the optimizer step, evaluation, checkpoints, metrics, for
every stage), optim (the shared optimisation settings; AdamW, schedule, accelerator), checkpoint
(its settings, atomic save/load), data (resumable sampler, collate), metrics (JSONL / TensorBoard /
W&B), model_setup (the tiny default, LoRA); next_token_config (pretrain / midtrain settings) and
next_token (their task: answer-token loss, held-out accuracy, model folders; the stage entries), with
samples (reading pools and mixtures), loss and evaluate_vlm; train_policy_config (train-policy's
settings) and train_policy (its task: the head's loss, validation, the policy folder; the stage entry),
with policy_data (episode split, RAM frame cache, held-out action error).
"""
