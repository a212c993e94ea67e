"""``ov2-ros train``: fine-tune LLaVA-OV-2 on annotated clips with the node's own tokenizer. Pure: no rclpy.

- ``targets``: answers rendered in the formats ``ov2_ros.model.parsers`` reads back, under the runtime's prompts;
- ``examples``: tokenizer windows -> token ids with answer-only labels (+ per-token vision targets for synthetic data);
- ``scenes`` / ``annotated``: example sources (synthetic named-shape scenes; ``annotations.json`` + videos or bags);
- ``aux``: the training-only auxiliary head on the merged vision tokens (never saved with the model);
- ``trainer``: the loop (seeded, resumable, atomic checkpoints, loss curve, held-out evaluation);
- ``toy``: the ``models/ov2-toy`` architecture and recipe (``make train-toy``).
"""
