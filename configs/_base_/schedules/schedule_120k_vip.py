# deeplab2's ViP-DeepLab solver (configs/*_dvps/vip_deeplab/*.textproto, trainer.proto defaults):
# Adam, base learning rate 2.5e-4, poly decay (power 0.9) to 0 over 120k steps, no weight decay,
# batch 16 (here 2 per GPU x 8 GPUs).
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=2.5e-4, weight_decay=0.0))
param_scheduler = [dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=120000, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=120000, val_interval=10000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
