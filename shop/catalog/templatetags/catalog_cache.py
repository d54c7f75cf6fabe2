"""`{% catalogcache "name" var ... [process_only] %}...{% endcatalogcache %}`: a rendered catalog
fragment under the catalog version (shop/catalog/cache.py), keyed by its name and the variables.

The body is rendered only on a miss, so the lazy querysets and objects it uses are never
fetched on a hit. A variable that is None means "do not cache" (the view's way to refuse keys
from arbitrary input, e.g. ?page=abc). `process_only` keeps the fragment in the process's
memory only, never in Redis: for keys made of free text (search words), which would otherwise
let anyone fill Redis.

A fragment is shared by every visitor. `{% csrf_token %}` inside one is a hole: stored as a
marker, filled with this visitor's token on every render. Anything else of one visitor (the
user, the cart, messages, the request) is refused with TemplateSyntaxError.
"""

from django.template import Library, Node, TemplateSyntaxError
from django.template.base import FilterExpression, NodeList, Variable
from django.template.loader_tags import IncludeNode
from django.template.smartif import TokenBase

from shop.catalog.cache import CSRF_HOLE, cached_fragment, fragment_key, request_catalog_version

register = Library()

PER_VISITOR_NAMES = frozenset({"user", "perms", "request", "messages", "cart_count"})


def per_visitor_names(root) -> set[str]:
    """The per-visitor names a template (node, node list) uses, included templates and all."""
    found, seen, pending = set(), set(), [root]
    while pending:
        item = pending.pop()
        if id(item) in seen or isinstance(item, str | int | float | bool | type(None)):
            continue
        seen.add(id(item))
        if isinstance(item, Variable) and item.lookups:
            found.update({item.lookups[0]} & PER_VISITOR_NAMES)
        elif isinstance(item, FilterExpression):
            pending.append(item.var)
            pending.extend(arg for _, args in item.filters for _, arg in args)
        elif isinstance(item, list | tuple | NodeList):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, IncludeNode):
            pending.append(included_template(item))
            pending.extend(item.extra_context.values())
        elif isinstance(item, Node):
            pending.extend(value for key, value in vars(item).items() if key not in ("origin", "token"))
        elif isinstance(item, TokenBase):  # {% if %} conditions
            pending.extend(vars(item).values())
    return found


def included_template(node: IncludeNode):
    name = node.template.var
    if isinstance(name, str):  # a literal name: check what it includes too
        from django.template.loader import get_template

        return get_template(name).template.nodelist
    raise TemplateSyntaxError("catalogcache: an included template must be named literally, to be checked.")


class CatalogFragmentNode(Node):
    def __init__(self, nodelist, name: str, vary_on: list[FilterExpression], process_only: bool):
        self.nodelist, self.name, self.vary_on, self.process_only = nodelist, name, vary_on, process_only
        self.checked = False

    def check_shared(self) -> None:
        if not self.checked:
            leaking = per_visitor_names(self.nodelist)
            if leaking:
                raise TemplateSyntaxError(
                    f"catalogcache {self.name!r} would share per-visitor content with every visitor "
                    f"({', '.join(sorted(leaking))}): render that outside the cached fragment."
                )
            self.checked = True

    def render_shared(self, context) -> str:
        with context.push(csrf_token=CSRF_HOLE):
            return self.nodelist.render(context)

    def render(self, context):
        self.check_shared()
        parts = tuple(var.resolve(context) for var in self.vary_on)
        if any(part is None for part in parts):
            return self.nodelist.render(context)
        version = request_catalog_version(context.get("request"))
        key = fragment_key(version, self.name, parts)
        html = cached_fragment(key, lambda: self.render_shared(context), process_only=self.process_only)
        if CSRF_HOLE in html:
            html = html.replace(CSRF_HOLE, str(context.get("csrf_token", "")))
        return html


@register.tag("catalogcache")
def do_catalogcache(parser, token):
    bits = token.split_contents()
    if len(bits) < 2 or bits[1][0] not in "\"'" or bits[1][0] != bits[1][-1]:
        raise TemplateSyntaxError(
            'Usage: {% catalogcache "name" [variable ...] [process_only] %}...{% endcatalogcache %}'
        )
    process_only = bits[-1] == "process_only"
    variables = bits[2:-1] if process_only else bits[2:]
    nodelist = parser.parse(("endcatalogcache",))
    parser.delete_first_token()
    return CatalogFragmentNode(
        nodelist, bits[1][1:-1], [parser.compile_filter(bit) for bit in variables], process_only
    )
