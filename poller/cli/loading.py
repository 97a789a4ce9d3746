"""What every ``poller`` command shares: its config arguments and how they become a config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from poller.config import AwsConfig, PollerConfig, StoreConfig, load_config, load_esm_json
from poller.errors import ConfigError

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "EXIT_OK", "add_config_arguments", "load"]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def add_config_arguments(command: argparse.ArgumentParser) -> None:
    """CONFIG, or a mapping as AWS prints it (``--esm``) with what it cannot say."""
    command.add_argument("config", nargs="?", help="TOML config file")
    command.add_argument(
        "--esm",
        metavar="JSON",
        help="a mapping as `aws lambda get-event-source-mapping` prints",
    )
    command.add_argument("--handler", metavar="MODULE:FUNCTION", help="handler for --esm")
    command.add_argument("--region", help="AWS region for --esm (default: AWS_REGION)")
    command.add_argument(
        "--endpoint-url", help="AWS endpoint for --esm (an emulator, or 'embedded')"
    )
    command.add_argument(
        "--store", help="store URL for --esm (default sqlite:///./.poller/state.db)"
    )


def load(args: argparse.Namespace) -> PollerConfig:
    if args.esm and args.config:
        raise ConfigError("give either a CONFIG file or --esm, not both")
    if args.esm:
        try:
            text = Path(args.esm).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(
                f"{args.esm}: cannot read the mapping JSON ({error.strerror})"
            ) from None
        aws_fields: dict[str, str] = {}
        if args.region:
            aws_fields["region"] = args.region
        if args.endpoint_url:
            aws_fields["endpoint_url"] = args.endpoint_url
        try:
            aws = AwsConfig.model_validate(aws_fields)
            store = StoreConfig(url=args.store) if args.store else None
        except ValueError as error:
            raise ConfigError(str(error)) from None
        return load_esm_json(text, handler=args.handler, aws=aws, store=store)
    if not args.config:
        raise ConfigError("give a CONFIG file, or --esm mapping.json --handler module:function")
    if args.handler or args.region or args.endpoint_url or args.store:
        raise ConfigError("--handler, --region, --endpoint-url and --store go with --esm only")
    config = load_config(args.config)
    # Handler modules are found in the current directory, PYTHONPATH, and next to the config file.
    config_dir = str(Path(args.config).resolve().parent)
    if config_dir not in sys.path:
        sys.path.append(config_dir)
    return config
