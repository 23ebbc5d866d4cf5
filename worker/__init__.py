"""Model workers: pop batches of work items from Redis, run one forward pass, publish the replies."""
