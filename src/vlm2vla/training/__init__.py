"""VLM next-token training (pretrain, midtrain) and VLA policy training (train-policy), on one driver with
resumable, atomic checkpoints.

    from vlm2vla.training.next_token import PretrainConfig, pretrain, MidtrainConfig, midtrain, train_next_token
    from vlm2vla.training.train_policy import TrainPolicyConfig, train_policy

Modules: driver (one training run: resume, the optimizer step, evaluation, checkpoints, metrics, for
every stage), optim (the shared optimisation settings; AdamW, schedule, accelerator), checkpoint
(its settings, atomic save/load), data (resumable sampler, collate), metrics (JSONL / TensorBoard /
W&B), model_setup (the tiny default, LoRA); next_token (pretrain / midtrain configs and stages) with
next_token_task (answer-token loss, held-out accuracy, model folders), samples (reading pools and
mixtures), loss, evaluate_vlm; train_policy (its config and stage) with policy_task (the head's loss,
validation, the policy folder) and policy_data (episode split, RAM frame cache, held-out action error).
"""
