from tests.conftest import Api, make_zip


async def test_owner_uploads_publishes_and_downloads(api: Api) -> None:
    # given
    alice = await api.sign_up("alice")
    body = make_zip()
    _, version_id, dataset_id = await api.model_with_dataset(alice, "PRIVATE")
    # when
    data = await api.gql(
        "query($id: ID!) { node(id: $id) { ... on TrainingDataset { status downloadUrl } } }",
        {"id": dataset_id},
        alice.token,
    )
    # then
    url = data["node"]["downloadUrl"]
    response = await api.http.get(url)
    assert response.status_code == 200
    assert response.content == body
