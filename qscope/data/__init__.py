"""Offline sources of real text: Debian package descriptions (apt lists) and the sae-probes tasks.

Nothing here touches the network: both sources are files already on the machine (after
`apt-get update -o Acquire::Languages=en` and `pip install --no-deps sae-probes`).
"""
