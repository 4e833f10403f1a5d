using System.Collections.Concurrent;

namespace PSpawn;

/// <summary>What a cached context serves: an executable (its full path) under one loader environment.</summary>
internal readonly record struct ContextKey(string Path, string LoaderEnvironment);

/// <summary>
/// One cached context. Created on first use (threads starting the same executable meanwhile wait for this entry only);
/// retired (removed from the cache, then disposed) by eviction. Starts hold the entry (<see cref="TryAcquire"/>) while
/// they spawn, and the bound evicts only entries nobody holds; a spawn that still races with a dispose (idle eviction,
/// <see cref="ContextCache.Clear"/>) gets <see cref="ObjectDisposedException"/> and the caller retries with a fresh entry.
/// </summary>
internal sealed class ContextEntry
{
    private readonly Lock _gate = new();
    private readonly Lazy<PSpawnContext> _context;
    private PSpawnContext? _created;
    private bool _retired;
    private long _lastUsed;
    private int _users = 1; // its creator holds it

    internal ContextEntry(ContextKey key, FileIdentity identity, Func<PSpawnContext> create, long now)
    {
        Key = key;
        Identity = identity;
        _lastUsed = now;
        _context = new Lazy<PSpawnContext>(() => Publish(create()), LazyThreadSafetyMode.ExecutionAndPublication);
    }

    internal ContextKey Key { get; }

    internal FileIdentity Identity { get; }

    /// <summary>The current directory when the context was created: its proxies' (and so its children's default) directory.</summary>
    internal string CreationDirectory { get; private set; } = string.Empty;

    internal long LastUsed => Volatile.Read(ref _lastUsed);

    internal bool IsRetired => Volatile.Read(ref _retired);

    /// <summary>The context if it has been created and not retired (for counting and tests).</summary>
    internal PSpawnContext? Live
    {
        get
        {
            lock (_gate)
            {
                return _retired ? null : _created;
            }
        }
    }

    /// <summary>The context, created on first use (the creation's exception is thrown to every waiter).</summary>
    internal PSpawnContext Context => _context.Value;

    /// <summary>How many starts hold the entry now.</summary>
    internal int Users => Volatile.Read(ref _users);

    internal void Touch(long now) => Volatile.Write(ref _lastUsed, now);

    /// <summary>Holds the entry for one start; false once it is retired.</summary>
    internal bool TryAcquire()
    {
        _ = Interlocked.Increment(ref _users);
        if (IsRetired)
        {
            Release();
            return false;
        }

        return true;
    }

    internal void Release() => Interlocked.Decrement(ref _users);

    /// <summary>Marks the entry retired and disposes its context (if created; a context created later is disposed by its creator).</summary>
    internal void Retire()
    {
        PSpawnContext? toDispose;
        lock (_gate)
        {
            if (_retired)
            {
                return;
            }

            _retired = true;
            toDispose = _created;
        }

        toDispose?.Dispose();
    }

    private PSpawnContext Publish(PSpawnContext context)
    {
        bool retired;
        lock (_gate)
        {
            _created = context;
            CreationDirectory = Directory.GetCurrentDirectory();
            retired = _retired;
        }

        if (retired)
        {
            context.Dispose(); // evicted while it was being created: the caller's spawn fails and is retried
        }

        return context;
    }
}

/// <summary>
/// The contexts of a <see cref="PSpawnProcessStarter"/>: a concurrent dictionary (lock-free lookups), a bound with
/// least-recently-used eviction (a small lock taken only when an entry is added or evicted) and an idle timer.
/// </summary>
internal sealed class ContextCache : IDisposable
{
    private readonly ConcurrentDictionary<ContextKey, ContextEntry> _entries = new();
    private readonly Lock _evictionGate = new();
    private readonly PSpawnProcessStarterOptions _options;
    private readonly ITimer? _idleTimer;
    private int _disposed;

    internal ContextCache(PSpawnProcessStarterOptions options)
    {
        _options = options;
        if (options.IdleTimeout != Timeout.InfiniteTimeSpan)
        {
            TimeSpan period = TimeSpan.FromTicks(Math.Max(options.IdleTimeout.Ticks / 4, TimeSpan.TicksPerMillisecond * 10));
            _idleTimer = options.TimeProvider.CreateTimer(_ => EvictIdle(), null, period, period);
        }
    }

    internal long Now => _options.TimeProvider.GetTimestamp();

    /// <summary>The contexts created and not evicted.</summary>
    internal IReadOnlyList<PSpawnContext> LiveContexts =>
        _entries.Values.Select(e => e.Live).OfType<PSpawnContext>().ToList();

    /// <summary>
    /// The entry for <paramref name="key"/> whose file is <paramref name="identity"/>, added (and the cache bounded) if
    /// needed, held for the caller: <see cref="ContextEntry.Release"/> it after the spawn.
    /// </summary>
    internal ContextEntry GetOrAdd(ContextKey key, FileIdentity identity, Func<PSpawnContext> create)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        long now = Now;
        while (true)
        {
            if (_entries.TryGetValue(key, out ContextEntry? entry))
            {
                if (entry.Identity == identity)
                {
                    if (entry.TryAcquire())
                    {
                        entry.Touch(now);
                        return entry;
                    }

                    continue; // retired meanwhile: removed from the dictionary by its retirer
                }

                Remove(entry); // the file was replaced (rebuilt): its old image must not be served
                continue;
            }

            var added = new ContextEntry(key, identity, create, now);
            if (_entries.TryAdd(key, added))
            {
                EnforceBound(added);
                if (Volatile.Read(ref _disposed) != 0)
                {
                    added.Release();
                    Remove(added);
                    throw new ObjectDisposedException(nameof(PSpawnProcessStarter));
                }

                return added;
            }
        }
    }

    /// <summary>Whether an entry for this file exists (so it is known not to be a script).</summary>
    internal bool IsKnownExecutable(ContextKey key, FileIdentity identity) =>
        _entries.TryGetValue(key, out ContextEntry? entry) && entry.Identity == identity && !entry.IsRetired;

    /// <summary>Ends a start's hold on <paramref name="entry"/>; enforces the bound that busy entries may have let the cache exceed.</summary>
    internal void Release(ContextEntry entry)
    {
        entry.Release();
        if (_entries.Count > _options.MaxContexts)
        {
            EnforceBound(added: null);
        }
    }

    /// <summary>Evicts every entry.</summary>
    internal void Clear()
    {
        foreach (ContextEntry entry in _entries.Values)
        {
            Remove(entry);
        }
    }

    /// <summary>Removes an entry (if it is still the cached one) and retires it.</summary>
    internal void Remove(ContextEntry entry)
    {
        _ = _entries.TryRemove(new KeyValuePair<ContextKey, ContextEntry>(entry.Key, entry));
        entry.Retire();
    }

    /// <summary>Evicts every context that has not been used for the idle timeout.</summary>
    internal void EvictIdle()
    {
        long now = Now;
        foreach (ContextEntry entry in _entries.Values)
        {
            if (_options.TimeProvider.GetElapsedTime(entry.LastUsed, now) >= _options.IdleTimeout)
            {
                Remove(entry);
            }
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _idleTimer?.Dispose();
        Clear();
    }

    private void EnforceBound(ContextEntry? added)
    {
        if (_entries.Count <= _options.MaxContexts)
        {
            return;
        }

        lock (_evictionGate)
        {
            while (_entries.Count > _options.MaxContexts)
            {
                ContextEntry? oldest = null;
                foreach (ContextEntry entry in _entries.Values)
                {
                    // Entries held by a start in flight are skipped: the bound may be exceeded while all are busy.
                    if (!ReferenceEquals(entry, added) && entry.Users == 0 && (oldest is null || entry.LastUsed < oldest.LastUsed))
                    {
                        oldest = entry;
                    }
                }

                if (oldest is null)
                {
                    return;
                }

                Remove(oldest);
            }
        }
    }
}
