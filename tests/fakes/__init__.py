"""Fakes for the Kubernetes platforms: CLIs on PATH (`fakecli`, `FakeCluster`), the Kubernetes
API (`kubeapi.FakeKubeAPI`) and subprocess.run at the boundary (`subproc.FakeRun`).

Recorded real-world output the fakes replay lives in `recordings/` (sources in
recordings/SOURCES.md); expected command transcripts of each code path in `transcripts/`.
"""
