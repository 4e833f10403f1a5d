#!/usr/bin/env bash
# guest: --cpus 2
# The .NET kernel path in the guest: tests/PSpawn.KernelGuest (built on the host by `dotnet build PSpawn.sln -c Release`)
# runs its checks with the native library beside it, then from a copy without libpspawn*.so (kernel batches must not
# need it). One "PASS name" / "FAIL name: why" line per check; exit 0 only if all passed.
set -uo pipefail
export DOTNET_CLI_HOME=/tmp HOME=/tmp DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_TieredPGO=0
app=tests/PSpawn.KernelGuest/bin/Release/net10.0
bin=artifacts/native/bin
if [ ! -f "$app/PSpawn.KernelGuest.dll" ] || [ ! -x "$bin/report" ]; then
    echo "FAIL dotnet_built: $app or $bin/report missing (run dotnet build PSpawn.sln -c Release on the host)"
    exit 1
fi
status=0
dotnet "$app/PSpawn.KernelGuest.dll" checks "$bin" || status=1
copy=/tmp/kguest-nonative
rm -rf "$copy"
cp -r "$app" "$copy"
find "$copy" -name 'libpspawn*.so' -delete
env -u PSPAWN_NATIVE_DIR dotnet "$copy/PSpawn.KernelGuest.dll" nonative "$bin" || status=1
exit $status
