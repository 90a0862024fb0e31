"""Small sweep configs shared by the end-to-end tests (fast on 2 CPU cores)."""

TINY = [
    "epochs=2",
    "samples_per_epoch=300",
    "env.episode_length=15",
    "env.goals=[0,3]",
    "variants.hidden_dims=[4,16]",
    "variants.buffer_sizes=[400]",
    "variants.seeds=[0,1]",
    "world_model.train_steps_per_epoch=30",
    "world_model.batch_size=64",
    "world_model.val_size=150",
    "world_model.k_steps=[1,5]",
    "planner.horizon=4",
    "planner.num_samples=12",
    "planner.num_elites=3",
    "planner.iterations=1",
    "planner.episodes_per_goal=2",
    "meta.bootstrap_samples=200",
    "checkpoint.keep_last=3",
]

# TINY with widths grown live: h4 -> h8 -> h16 over three epochs, deciding on the last epoch alone
AUTO = [x for x in TINY if not x.startswith(("epochs=", "variants.hidden_dims="))] + [
    "epochs=3", "variants.capacity_mode=auto", "variants.auto_start_hidden_dim=4",
    "variants.auto_max_hidden_dim=16", "meta.last_k_epochs=1"]
