import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, request } from "../api/client";
import { Failure, Loading } from "../components/Status";
import { Time } from "../components/Time";
import { BASE_MODELS, keys, MODEL_TYPES, SORTS, type BaseModelValue } from "../enums";
import { formats } from "../format";
import { graphql } from "../gql";
import type { CatalogueQuery, ModelSort } from "../gql/graphql";
import { useTitle } from "../hooks";
import { Link, navigate } from "../router";
import { viewerSeen } from "../session";

const CatalogueQueryDocument = graphql(`
  query Catalogue($first: Int!, $after: String, $query: String, $tag: String, $baseModel: BaseModelName, $sort: ModelSort!) {
    ...ViewerHeader
    models(first: $first, after: $after, query: $query, tag: $tag, baseModel: $baseModel, sort: $sort) {
      edges {
        cursor
        node {
          id
          name
          description
          type
          tags
          nsfw
          downloadCount
          createdAt
          owner {
            id
            username
          }
          versions(first: 1) {
            id
            name
            baseModel
            publishedAt
          }
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

type ModelCard = CatalogueQuery["models"]["edges"][number]["node"];
const PAGE = 20;
const TERM_MIN = 3;

interface Filters {
  q: string;
  tag: string;
  base: BaseModelValue | "";
  sort: ModelSort;
}

function filtersOf(params: URLSearchParams): Filters {
  const base = params.get("base") ?? "";
  const sort = params.get("sort") ?? "NEWEST";
  return {
    q: params.get("q") ?? "",
    tag: params.get("tag") ?? "",
    base: base in BASE_MODELS ? (base as BaseModelValue) : "",
    sort: sort in SORTS ? (sort as ModelSort) : "NEWEST",
  };
}

function searchPath(f: Filters): string {
  const params = new URLSearchParams();
  if (f.q) params.set("q", f.q);
  if (f.tag) params.set("tag", f.tag);
  if (f.base) params.set("base", f.base);
  if (f.sort !== "NEWEST") params.set("sort", f.sort);
  const query = params.toString();
  return query ? `/?${query}` : "/";
}

/** The words of a search, if every one is long enough for the index. */
function usableQuery(q: string): { query: string | null; problem: string | null } {
  const terms = q.trim().split(/\s+/).filter(Boolean);
  if (terms.length === 0) return { query: null, problem: null };
  if (terms.some((t) => t.length < TERM_MIN)) {
    return { query: null, problem: `Each search word needs at least ${TERM_MIN} characters.` };
  }
  return { query: terms.join(" "), problem: null };
}

function Card({ model }: { model: ModelCard }) {
  const latest = model.versions[0];
  return (
    <li class="card">
      <h2 class="card-title">
        <Link to={`/models/${encodeURIComponent(model.id)}`}>{model.name}</Link>
      </h2>
      <p class="meta">
        by {model.owner.username} · {MODEL_TYPES[model.type]}
        {latest && <> · {BASE_MODELS[latest.baseModel]}</>} · {formats.number(model.downloadCount)} downloads
        {model.nsfw && <> · NSFW</>}
      </p>
      {model.description && <p class="description clamp">{model.description}</p>}
      <p class="meta">
        {latest?.publishedAt ? (
          <>
            {latest.name}, published <Time at={latest.publishedAt} />
          </>
        ) : (
          <>
            Draft, created <Time at={model.createdAt} />
          </>
        )}
      </p>
      {model.tags.length > 0 && (
        <ul class="tags" aria-label="Tags">
          {model.tags.map((tag) => (
            <li>
              <Link to={searchPath({ q: "", tag, base: "", sort: "NEWEST" })} class="tag">
                #{tag}
              </Link>
            </li>
          ))}
        </ul>
      )}
    </li>
  );
}

export function Catalogue({ params }: { params: URLSearchParams }) {
  useTitle("Models");
  const filters = filtersOf(params);
  const [text, setText] = useState(filters.q);
  const { query, problem } = usableQuery(filters.q);
  const key = JSON.stringify([query, filters.tag, filters.base, filters.sort]);

  const [models, setModels] = useState<ModelCard[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [more, setMore] = useState(false);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<ApiError | null>(null);
  const ticket = useRef(0);
  const sentinel = useRef<HTMLDivElement>(null);

  const load = async (after: string | null) => {
    const mine = after === null ? ++ticket.current : ticket.current;
    setLoading(true);
    setError(null);
    try {
      const data = await request(CatalogueQueryDocument, {
        first: PAGE,
        after,
        query,
        tag: filters.tag || null,
        baseModel: filters.base || null,
        sort: filters.sort,
      });
      if (mine !== ticket.current) return;
      viewerSeen(data.viewer);
      const page = data.models.edges.map((e) => e.node);
      setModels((shown) => (after === null ? page : [...shown, ...page]));
      setCursor(data.models.pageInfo.endCursor ?? null);
      setMore(data.models.pageInfo.hasNextPage);
    } catch (reason) {
      if (mine === ticket.current) setError(reason instanceof ApiError ? reason : new ApiError(String(reason)));
    } finally {
      if (mine === ticket.current) setLoading(false);
    }
  };

  useEffect(() => {
    setModels([]);
    setMore(false);
    void load(null);
  }, [key]);

  // Infinite scroll: the next page loads when the end of the list comes into view.
  useEffect(() => {
    const end = sentinel.current;
    if (!end || !more || loading) return;
    const observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) void load(cursor);
    });
    observer.observe(end);
    return () => observer.disconnect();
  }, [more, loading, cursor]);

  // A link (a tag, the back button) may change the search: the box follows it.
  useEffect(() => setText(filters.q), [filters.q]);

  // The search box updates the URL as one types (debounced), so a search can be shared.
  useEffect(() => {
    if (text === filters.q) return;
    const timer = setTimeout(() => navigate(searchPath({ ...filters, q: text }), { replace: true }), 300);
    return () => clearTimeout(timer);
  }, [text]);

  const set = (change: Partial<Filters>) => navigate(searchPath({ ...filters, ...change }), { replace: true });

  return (
    <>
      <h1 tabIndex={-1}>Models</h1>
      <form class="filters" role="search" onSubmit={(e) => (e.preventDefault(), set({ q: text }))}>
        <div class="field grow">
          <label for="search">Search</label>
          <input
            id="search"
            type="search"
            value={text}
            placeholder="name, tag, trigger word, creator"
            aria-describedby={problem ? "search-problem" : undefined}
            onInput={(e) => setText(e.currentTarget.value)}
          />
        </div>
        <div class="field">
          <label for="tag">Tag</label>
          <input id="tag" type="text" value={filters.tag} onChange={(e) => set({ tag: e.currentTarget.value.trim().toLowerCase() })} />
        </div>
        <div class="field">
          <label for="base">Base model</label>
          <select id="base" value={filters.base} onChange={(e) => set({ base: e.currentTarget.value as BaseModelValue | "" })}>
            <option value="">Any</option>
            {keys(BASE_MODELS).map((b) => (
              <option value={b}>{BASE_MODELS[b]}</option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="sort">Sort by</label>
          <select id="sort" value={filters.sort} onChange={(e) => set({ sort: e.currentTarget.value as ModelSort })}>
            {keys(SORTS).map((s) => (
              <option value={s}>{SORTS[s]}</option>
            ))}
          </select>
        </div>
      </form>
      {problem && (
        <p class="hint" id="search-problem" role="status">
          {problem}
        </p>
      )}
      <p class="sr-only" role="status">
        {loading ? "" : `${models.length} models shown${more ? ", more below" : ""}.`}
      </p>
      {models.length > 0 && (
        <ul class="cards" data-testid="catalogue">
          {models.map((m) => (
            <Card key={m.id} model={m} />
          ))}
        </ul>
      )}
      {!loading && !error && models.length === 0 && <p class="muted">No models match.</p>}
      {error && <Failure error={error} retry={() => void load(models.length ? cursor : null)} />}
      {loading && <Loading what="models" />}
      <div ref={sentinel} />
      {more && !loading && (
        <button type="button" onClick={() => void load(cursor)}>
          Show more models
        </button>
      )}
    </>
  );
}
