"""poller: AWS Lambda event source mappings, run anywhere."""
