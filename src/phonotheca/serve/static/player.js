// Phonotheca's web UI: search as you type, the in-page player with its queue, and the
// shuffle radio. Pages work without this file; it only enhances them. Text from the
// catalog is only ever set with textContent, never parsed as HTML.
"use strict";

(function () {
  const canPlay = document.body.dataset.canPlay === "true";
  const audio = document.getElementById("audio");
  const player = document.getElementById("player");
  const queueList = document.getElementById("queue");
  const STORE = "phonotheca.queue";
  let queue = [];
  let current = -1;
  let radio = false;

  function load() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(STORE) || "{}");
      queue = Array.isArray(saved.queue) ? saved.queue : [];
      current = Number.isInteger(saved.current) ? saved.current : -1;
    } catch (e) { queue = []; current = -1; }
  }
  function save() {
    sessionStorage.setItem(STORE, JSON.stringify({ queue: queue, current: current }));
  }

  function render() {
    player.hidden = queue.length === 0;
    document.getElementById("queue-count").textContent = String(queue.length);
    queueList.replaceChildren();
    queue.forEach(function (t, i) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "link";
      b.textContent = t.title + " — " + t.artist;
      b.addEventListener("click", function () { playAt(i); });
      if (i === current) li.className = "current";
      li.appendChild(b);
      queueList.appendChild(li);
    });
    const now = queue[current];
    document.getElementById("now-title").textContent = now ? now.title + " — " + now.artist : "Nothing playing";
  }

  // -- loudness normalisation ------------------------------------------------------------
  // The audio element plays through a Web Audio gain node set to the track's ReplayGain 2
  // gain (to -18 LUFS, measured at build), held down so that its true peak stays under
  // full scale. On by default; the choice is remembered in localStorage.
  const LEVEL = "phonotheca.normalize";
  let normalize = localStorage.getItem(LEVEL) !== "off";
  let audioCtx = null;
  let gainNode = null;

  function gainOf(t) {
    if (!t || t.gain == null || !isFinite(t.gain)) return 1;
    let db = Number(t.gain);
    if (t.peak != null && t.peak > 0) db = Math.min(db, -20 * Math.log10(t.peak));
    return Math.pow(10, db / 20);
  }
  function applyGain() {
    const value = normalize ? gainOf(queue[current]) : 1;
    if (!gainNode && value !== 1 && window.AudioContext) {
      audioCtx = new AudioContext();
      gainNode = audioCtx.createGain();
      audioCtx.createMediaElementSource(audio).connect(gainNode).connect(audioCtx.destination);
    }
    if (gainNode) {
      gainNode.gain.value = value;
      if (audioCtx.state === "suspended") audioCtx.resume();
    }
    // What is applied, for people and tests: the node's own value once there is one.
    audio.dataset.gain = String(gainNode ? gainNode.gain.value : value);
  }
  function showLevel() {
    const b = document.getElementById("normalize");
    if (!b) return;
    b.setAttribute("aria-pressed", String(normalize));
    b.textContent = normalize ? "Level volume: on" : "Level volume: off";
  }

  function playAt(i) {
    if (i < 0 || i >= queue.length) return;
    current = i;
    audio.src = queue[i].audio;
    applyGain();
    audio.play().catch(function () { /* autoplay refused: the controls are there */ });
    save();
    render();
    if (radio && queue.length - current <= 2) moreRadio();
  }

  function trackOf(el) {
    const row = el.closest("[data-track-id]");
    if (!row || !row.dataset.audio) return null;
    return {
      id: row.dataset.trackId, title: row.dataset.title, artist: row.dataset.artist, audio: row.dataset.audio,
      gain: row.dataset.gain ? Number(row.dataset.gain) : null,
      peak: row.dataset.peak ? Number(row.dataset.peak) : null,
    };
  }

  function enqueue(track, playNow) {
    queue.push(track);
    if (playNow || current < 0 || audio.ended) playAt(queue.length - 1);
    else { save(); render(); }
  }

  function apiTrack(t) {
    const l = t.loudness;
    return {
      id: t.id, title: t.title, artist: t.artist_credit, audio: t.audio_url,
      gain: l ? l.track_gain_db : null,
      peak: l && l.true_peak_dbtp != null ? Math.pow(10, l.true_peak_dbtp / 20) : null,
    };
  }

  let fetching = false;
  function moreRadio() {
    if (fetching) return;
    fetching = true;
    fetch("/api/v1/shuffle?n=50&playable=true", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : { tracks: [] }; })
      .then(function (data) {
        const start = queue.length;
        data.tracks.filter(function (t) { return t.playable; }).forEach(function (t) { queue.push(apiTrack(t)); });
        save(); render();
        if (current < 0 || (audio.paused && current === start - 1 && audio.ended)) playAt(start);
      })
      .finally(function () { fetching = false; });
  }

  function wireTracks(root) {
    if (!canPlay) return;
    root.querySelectorAll("a.play").forEach(function (a) {
      a.addEventListener("click", function (ev) {
        const t = trackOf(a);
        if (!t) return;
        ev.preventDefault();
        enqueue(t, true);
      });
    });
    root.querySelectorAll("button.enqueue").forEach(function (b) {
      b.hidden = false;
      b.addEventListener("click", function () {
        const t = trackOf(b);
        if (t) enqueue(t, false);
      });
    });
  }

  // -- search as you type ----------------------------------------------------------------
  const box = document.getElementById("search-box");
  const results = document.getElementById("results");
  let timer = null;
  let seq = 0;

  function cell(row, content, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    if (content instanceof Node) td.appendChild(content); else td.textContent = content;
    row.appendChild(td);
    return td;
  }
  function link(href, text) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }
  function duration(ms) {
    if (ms == null) return "";
    const s = Math.round(ms / 1000);
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }
  function enc(id) { return encodeURIComponent(id); }

  function showResults(q, tracks, playlists) {
    const nodes = [];
    if (playlists && playlists.length) {
      const h2 = document.createElement("h2");
      h2.className = "playlist-hits";
      h2.textContent = "Playlists matching “" + q + "”";
      const ul = document.createElement("ul");
      ul.className = "playlists";
      playlists.forEach(function (p) {
        const li = document.createElement("li");
        li.className = "playlist-item";
        const a = link("/playlists/" + enc(p.id), p.title);
        a.title = p.title;
        li.appendChild(a);
        const facts = document.createElement("span");
        facts.className = "muted";
        facts.textContent = (p.creator ? " by " + p.creator : "") + " · " +
          p.entry_count.toLocaleString("en") + " entries, " +
          p.matched_count.toLocaleString("en") + " in the catalog";
        li.appendChild(document.createTextNode(" "));
        li.appendChild(facts);
        ul.appendChild(li);
      });
      nodes.push(h2, ul);
    }
    const h1 = document.createElement("h1");
    h1.textContent = "Tracks matching “" + q + "”";
    nodes.push(h1);
    if (tracks.length === 0) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = "No track matches every word.";
      nodes.push(p);
    } else {
      const table = document.createElement("table");
      table.className = "tracks";
      const body = document.createElement("tbody");
      tracks.forEach(function (t) {
        const tr = document.createElement("tr");
        tr.className = "track";
        tr.dataset.trackId = t.id;
        tr.dataset.title = t.title;
        tr.dataset.artist = t.artist_credit;
        if (t.audio_url) tr.dataset.audio = t.audio_url;
        const level = apiTrack(t);
        if (level.gain != null) tr.dataset.gain = String(level.gain);
        if (level.peak != null) tr.dataset.peak = String(level.peak);
        const title = link("/tracks/" + enc(t.id), t.title);
        title.title = t.title;
        cell(tr, title, "title-col");
        const artists = document.createElement("span");
        if (t.artists.length) {
          t.artists.forEach(function (a) {
            artists.appendChild(link("/artists/" + enc(a.id), a.name));
            artists.appendChild(document.createTextNode(a.join_phrase));
          });
        } else artists.textContent = t.artist_credit;
        cell(tr, artists, "artist-col");
        cell(tr, t.album ? link("/albums/" + enc(t.album.id), t.album.title) : "", "album-col");
        cell(tr, duration(t.duration_ms), "time-col num");
        cell(tr, t.popularity == null ? "" : String(t.popularity), "num pop-col");
        const actions = cell(tr, "", "actions");
        if (t.playable && canPlay) {
          const a = link(t.audio_url, "Play");
          a.className = "play";
          actions.appendChild(a);
          actions.appendChild(document.createTextNode(" "));
          const b = document.createElement("button");
          b.type = "button"; b.className = "enqueue"; b.textContent = "+ Queue";
          actions.appendChild(b);
        } else if (!t.playable) {
          const s = document.createElement("span");
          s.className = "muted"; s.textContent = "not here";
          actions.appendChild(s);
        }
        body.appendChild(tr);
      });
      table.appendChild(body);
      nodes.push(table);
    }
    results.replaceChildren.apply(results, nodes);
    wireTracks(results);
  }

  if (box && results) {
    box.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        const q = box.value;
        const mine = ++seq;
        if (!q.trim()) return;
        fetch("/api/v1/search?limit=50&q=" + encodeURIComponent(q), { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.json() : null; })
          .then(function (data) {
            if (!data || mine !== seq) return;   // a newer keystroke won
            showResults(q, data.tracks, data.playlists);
            history.replaceState(null, "", "/?q=" + encodeURIComponent(q));
          });
      }, 120);
    });
  } else if (box) {
    // Off the search page, typing takes you there (the form submits on Enter anyway).
  }

  // -- player buttons --------------------------------------------------------------------
  load();
  if (canPlay) {
    audio.addEventListener("ended", function () { playAt(current + 1); });
    document.getElementById("next").addEventListener("click", function () { playAt(current + 1); });
    document.getElementById("prev").addEventListener("click", function () { playAt(current - 1); });
    document.getElementById("clear-queue").addEventListener("click", function () {
      queue = []; current = -1; radio = false; audio.removeAttribute("src"); audio.load(); save(); render();
    });
    const level = document.getElementById("normalize");
    level.hidden = false;
    level.addEventListener("click", function () {
      normalize = !normalize;
      localStorage.setItem(LEVEL, normalize ? "on" : "off");
      showLevel();
      applyGain();
    });
    showLevel();
    audio.addEventListener("play", function () {
      if (audioCtx && audioCtx.state === "suspended") audioCtx.resume();
    });
    const toggle = document.getElementById("toggle-queue");
    toggle.addEventListener("click", function () {
      queueList.hidden = !queueList.hidden;
      toggle.setAttribute("aria-expanded", String(!queueList.hidden));
    });
    document.querySelectorAll("button.play-all").forEach(function (b) {
      b.hidden = false;
      b.addEventListener("click", function () {
        const start = queue.length;
        document.querySelectorAll("tr.track[data-audio]").forEach(function (row) {
          const t = trackOf(row);
          if (t) queue.push(t);
        });
        playAt(start);
      });
    });
    const radioButton = document.getElementById("radio");
    if (radioButton) {
      radioButton.hidden = false;
      radioButton.addEventListener("click", function () {
        radio = true;
        queue = []; current = -1;
        moreRadio();
      });
    }
    wireTracks(document);
    if (queue.length && current >= 0 && queue[current]) {
      audio.src = queue[current].audio;
      applyGain();
    }
    render();
  }
})();
