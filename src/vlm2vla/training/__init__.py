"""VLM next-token training (pretrain, midtrain) and VLA policy training (train-policy), with resumable,
atomic checkpoints.

    from vlm2vla.training.next_token import PretrainConfig, pretrain, MidtrainConfig, midtrain
    from vlm2vla.training.session import train_next_token   # the shared next-token trainer
    from vlm2vla.training.train_policy import TrainPolicyConfig, train_policy

Modules: config (settings), samples (reading pools / mixtures), data (resumable sampler, collate),
loss (answer-token loss), loop (one optimizer step on accelerate), checkpoint (atomic save/load),
evaluate_vlm (held-out loss and accuracy), metrics (JSONL / TensorBoard / W&B), model_setup (loading,
the tiny default, LoRA), session (one whole run), next_token (the two CLI stages); train_policy (the
train-policy stage), policy_loop (its optimizer step), policy_data (episode split, RAM frame cache,
held-out action error).
"""
