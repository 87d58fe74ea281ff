"""Jobs the trainer can run: each knows its data, loss and evaluation (``attentive.train.task.Task``)."""
