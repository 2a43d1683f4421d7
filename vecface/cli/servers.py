"""``vecface weaviate ...`` and ``vecface pg ...``: the local servers (and clusters) vecface runs."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .common import DataDir, handle_errors

weaviate_app = typer.Typer(help="The local Weaviate server or cluster: build it, start it, check it, stop it.",
                           no_args_is_help=True)
pg_app = typer.Typer(help="The embedded PostgreSQL and its read replicas: start, check, stop.",
                     no_args_is_help=True)

Nodes = Annotated[Optional[int], typer.Option("--nodes", min=1, help="start a cluster of N nodes on 127.0.0.1")]
Node = Annotated[Optional[int], typer.Option("--node", min=0, help="only this node of the cluster (0-based)")]
Replicas = Annotated[int, typer.Option("--replicas", min=0, help="hot standbys by streaming replication")]


# ====================================================================== weaviate

@weaviate_app.command("install")
@handle_errors
def weaviate_install(force: bool = typer.Option(False, "--force", help="rebuild even if the binary is there"),
                     version: Optional[str] = typer.Option(None, help="the Weaviate release to build "
                                                           "(default: the pinned one)")) -> None:
    """Build weaviate-server with the Go toolchain (skipped when the pinned binary is cached)."""
    from ..backends import weaviate_install as wi

    version = version or wi.PINNED_VERSION
    res = wi.install(version, force=force, echo=typer.echo)
    typer.echo(res.describe())
    built_from = wi.go_module_version(res.path)
    if built_from and built_from != version:
        typer.echo(f"warning: {res.path} was built from weaviate {built_from}, not {version}", err=True)
        raise typer.Exit(1)
    typer.echo(f"binary: {res.path} ({res.path.stat().st_size / 1e6:.0f} MB); "
               f"module version: {built_from or 'unknown (no go to ask)'}; took {res.seconds:.1f} s")


@weaviate_app.command("start")
@handle_errors
def weaviate_start(data_dir: DataDir = None, nodes: Nodes = None, node: Node = None) -> None:
    """Start the local server in the background (reused until 'stop'); --nodes N: a cluster; --node i: one node again."""
    from ..backends import weaviate_cluster as wc, weaviate_server as ws

    if node is not None:
        cluster = wc.start_node(data_dir, node)
        typer.echo(f"node{node} running again; the {len(cluster.nodes)}-node cluster is healthy")
        return
    if nodes is not None:
        cluster = wc.start_cluster(data_dir, nodes)
        typer.echo(f"Weaviate {cluster.version} cluster of {len(cluster.nodes)} nodes, all HEALTHY:")
        for n in cluster.nodes:
            typer.echo(f"  {n.name}  pid {n.pid}  {n.url}  gRPC {n.grpc_port}  log {n.log_path}")
        return
    info = ws.acquire(data_dir, detach=True)
    typer.echo(f"Weaviate {info.version} running (pid {info.pid}): {info.url}, gRPC port {info.grpc_port}; "
               f"data {info.data_path}; log {info.log_path}")


@weaviate_app.command("status")
@handle_errors
def weaviate_status(data_dir: DataDir = None) -> None:
    """Show whether the binary is installed, and every local server and cluster node on the data dir."""
    from ..backends import weaviate_cluster as wc, weaviate_install as wi, weaviate_server as ws

    binary = wi.find_binary()
    typer.echo(f"binary: {binary or 'not installed (vecface weaviate install)'} (pinned {wi.PINNED_VERSION})")
    st = ws.status(data_dir)
    if st.recorded is None or not st.alive:
        typer.echo("server: not running (started on demand by the weaviate backend)")
    else:
        info = st.recorded
        state = "running" if st.ready else "starting (not ready yet)"
        typer.echo(f"server: {state} (pid {info.pid}{', detached' if info.detached else ''}) at {info.url}, "
                   f"gRPC port {info.grpc_port}; log {info.log_path}")
    if st.unrecorded:
        typer.echo(f"server: unrecorded weaviate-server processes on this data dir: {st.unrecorded} "
                   f"('vecface weaviate stop' stops them)")
    nodes, strays = wc.cluster_status(data_dir)
    if nodes:
        typer.echo(f"cluster: {len(nodes)} nodes")
        for s in nodes:
            typer.echo(f"  {s.info.name}  {'running' if s.alive else 'stopped'}  pid {s.info.pid}  {s.info.url}  "
                       f"gRPC {s.info.grpc_port}  {'ready' if s.ready else 'not ready'}  health {s.health}")
    if strays:
        typer.echo(f"cluster: unrecorded weaviate-server processes: {strays}")


@weaviate_app.command("stop")
@handle_errors
def weaviate_stop(data_dir: DataDir = None, node: Node = None) -> None:
    """Stop the local server and every cluster node (recorded or not), or one node with --node i."""
    from ..backends import weaviate_cluster as wc, weaviate_server as ws

    if node is not None:
        typer.echo(f"node{node} stopped" if wc.stop_node(data_dir, node) else f"node{node} was not running")
        return
    single = ws.stop_server(data_dir)
    nodes = wc.stop_cluster(data_dir)
    if not single and not nodes:
        typer.echo("no server was running")
    else:
        typer.echo("stopped" + (f" (server and {nodes} cluster nodes)" if nodes and single else
                                f" ({nodes} cluster nodes)" if nodes else ""))


# ====================================================================== postgres

@pg_app.command("start")
@handle_errors
def pg_start(data_dir: DataDir = None, replicas: Replicas = 0) -> None:
    """Start the embedded PostgreSQL in the background (kept until 'stop'), with N read replicas."""
    from ..backends import pg_replicas, pg_server
    from ..config import redact

    if replicas:
        rs = pg_replicas.start_replicas(data_dir, replicas)
        typer.echo(f"primary: {redact(rs.primary)}")
        for i, dsn in enumerate(rs.replicas):
            typer.echo(f"replica{i}: {redact(dsn)} (streaming)")
        return
    uri = pg_server.acquire(data_dir, detach=True)
    typer.echo(f"PostgreSQL running: {redact(uri)}; data {pg_server.pgdata_for(data_dir)}")


@pg_app.command("status")
@handle_errors
def pg_status(data_dir: DataDir = None) -> None:
    """Show the embedded PostgreSQL, its replicas, and any postmaster nobody recorded."""
    from ..backends import pg_replicas, pg_server
    from ..config import redact

    st = pg_server.status(data_dir)
    if st.recorded is None:
        typer.echo(f"primary: not running (started on demand by the pgvector backend); data {st.pgdata}")
    else:
        typer.echo(f"primary: {st.recorded.status or 'running'} (pid {st.recorded.pid}"
                   f"{', detached' if st.detached else ''}): {redact(st.recorded.uri)}; data {st.pgdata}")
    if st.unrecorded:
        typer.echo(f"primary: unrecorded postmasters on this data dir: {st.unrecorded} ('vecface pg stop' stops them)")
    for r in pg_replicas.replica_status(data_dir):
        if r.pid is None:
            typer.echo(f"{r.name}: stopped; data {r.pgdata}")
        else:
            lag = f", {r.lag_bytes} bytes behind" if r.lag_bytes else ""
            typer.echo(f"{r.name}: running (pid {r.pid}), {'streaming' if r.streaming else 'NOT streaming'}{lag}: "
                       f"{redact(r.dsn or '')}")


@pg_app.command("stop")
@handle_errors
def pg_stop(data_dir: DataDir = None) -> None:
    """Stop the replicas and the embedded PostgreSQL, whoever started them."""
    from ..backends import pg_replicas, pg_server

    replicas = pg_replicas.stop_replicas(data_dir)
    primary = pg_server.stop_server(data_dir)
    typer.echo("no server was running" if not (replicas or primary) else
               f"stopped ({'primary' if primary else 'no primary'}, {replicas} replicas)")
