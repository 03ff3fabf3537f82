"""The `facecast` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from pathlib import Path

from facecast.config import Settings, get_settings
from facecast.errors import ConfigError, FacecastError
from facecast.logs import setup_logging

log = logging.getLogger("facecast")


def _settings() -> Settings:
    try:
        return get_settings()
    except ConfigError as exc:
        sys.exit(f"facecast: {exc.message}")


async def _create_key(settings: Settings, name: str) -> str:
    from facecast.clock import SystemClock
    from facecast.sessions.db import Database
    from facecast.sessions.keys import create_api_key

    db = Database(settings.database_url)
    try:
        await db.create_all()
        key, _ = await create_api_key(db, name, SystemClock().now())
        return key
    finally:
        await db.close()


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from facecast.api.app import create_app

    settings = _settings()
    settings = settings.model_copy(update={"host": args.host or settings.host,
                                           "port": args.port or settings.port})
    setup_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


def cmd_keys_create(args: argparse.Namespace) -> None:
    key = asyncio.run(_create_key(_settings(), args.name))
    print(key)
    print("Store this key now: facecast keeps only its hash and cannot show it again.",
          file=sys.stderr)


def cmd_demo(args: argparse.Namespace) -> None:
    from facecast.demo_runner import run_demo

    settings = _settings()
    setup_logging(settings.log_level)
    run_demo(settings, host=args.host or settings.host, port=args.port or settings.port,
             agent_port=args.agent_port)


def cmd_render(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from facecast.render import builtin_avatar, load_avatar, prepare_avatar, save_avatar
    from facecast.render.offline import render_to_mp4

    settings = _settings()
    avatar_arg = args.avatar
    if avatar_arg == "default":
        avatar = builtin_avatar()
    elif (settings.data_dir / "avatars" / avatar_arg).is_dir():
        avatar = load_avatar(settings.data_dir / "avatars" / avatar_arg)
    elif Path(avatar_arg).is_file():
        prepared = prepare_avatar(Path(avatar_arg).read_bytes(),
                                  max_bytes=settings.max_upload_bytes)
        tmp = Path(tempfile.mkdtemp(prefix="facecast-avatar-"))
        save_avatar(prepared, tmp / "avatar")
        avatar = load_avatar(tmp / "avatar")
    else:
        sys.exit(f"facecast render: --avatar {avatar_arg!r} is neither an avatar id nor an image file")
    bar = tqdm(total=0, unit="frame", desc="rendering")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    stats = render_to_mp4(avatar, Path(args.audio), Path(args.out), preset=args.render_model,
                          progress=progress)
    bar.close()
    print(f"wrote {args.out}: {stats}")


def cmd_standin(args: argparse.Namespace) -> None:
    from facecast.testing.cartesia_agent import run_standin

    setup_logging("INFO")
    run_standin(host=args.host, port=args.port, token=args.token, idle_timeout=args.idle_timeout)


def cartesia_token(argv: list[str]) -> int:
    """`facecast cartesia token ...`: its own options, parsed by `facecast.cartesia.token_cli`."""
    from facecast.cartesia import token_cli

    settings = _settings()
    return token_cli(argv, env_api_key=os.environ.get("CARTESIA_API_KEY"),
                     base_url=settings.cartesia_api_url)


def _key_name(value: str) -> str:
    if len(value) > 200 or "\x00" in value:
        raise argparse.ArgumentTypeError("at most 200 characters, no NUL")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facecast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the server")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    p = keys.add_parser("create", help="create an API key and print it once")
    p.add_argument("--name", default="", type=_key_name, help="a label (at most 200 characters)")
    p.set_defaults(func=cmd_keys_create)

    p = sub.add_parser("demo", help="server + local stand-in agent + demo page, no keys needed")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--agent-port", type=int, default=0, help="stand-in agent port (0: any free)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("render", help="render speech audio to a talking-head MP4 offline")
    p.add_argument("--avatar", default="default", help="an avatar id or a portrait image file")
    p.add_argument("--audio", required=True, help="speech audio file (WAV or anything FFmpeg reads)")
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument("--render-model", default="default", help="render preset (default, small, large)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("standin-agent", help="run the local stand-in Cartesia agent")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--token", default=None, help="accept only this credential")
    p.add_argument("--idle-timeout", type=float, default=180.0)
    p.set_defaults(func=cmd_standin)

    cartesia = sub.add_parser("cartesia", help="Cartesia helpers").add_subparsers(
        dest="cartesia_command", required=True)
    # listed for --help; main() hands its arguments to facecast.cartesia.token_cli
    cartesia.add_parser("token", help="mint a short-lived Cartesia agent access token "
                                      "(--api-key or $CARTESIA_API_KEY, --expires-in N)")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["cartesia", "token"]:
        sys.exit(cartesia_token(argv[2:]))
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except FacecastError as exc:
        sys.exit(f"facecast: {exc.message}")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
