"""Sources: a registry of source specs, one package per source, and the family cores they share.

* :mod:`poller.sources.spec`: what a kind of source is (:class:`~poller.sources.spec.SourceSpec`);
* :mod:`poller.sources.registry`: every kind poller reads, one line each;
* one package per source: ``kinesis``, ``dynamodb_streams``, ``sqs``, ``kafka``, ``mq`` (with its
  engines ``rabbitmq`` and ``activemq``);
* family cores: ``shards`` (Kinesis and DynamoDB Streams), ``mq`` (the brokers),
  ``credentials`` (broker secrets). AWS call helpers (throttling, backoff) are
  :mod:`poller.aws_calls`, shared with the stores and destinations.

Each package face imports no client library; a source's client is imported when a mapping of
its kind opens.
"""
